"""The command implementations `spoolca.cli` dispatches to, a module per area."""
