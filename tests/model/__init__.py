"""An independent reference model of the patent's claims (docs/claims.md), and the differential
test that holds `boxwatch replay` against it. Nothing here imports the system (`boxwatch`,
`boxwatch_infra`) except `harness.py`, which runs scenarios through replay."""
