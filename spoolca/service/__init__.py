"""The daemon (watchdog emitter -> queue -> worker) and sd_notify."""
