"""The `boxwatch` console command's groups, one module each (`register(subparsers)`): nothing
else imports them."""
