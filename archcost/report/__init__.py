"""Tables and plots. The only place that formats numbers; nothing here counts."""
