"""The dashboard's pages, one module each (see `clawnsole.web.dashboard`)."""
