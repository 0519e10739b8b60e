"""Where results go: CSV per phase, one JSON with everything, a self-contained HTML report, the terminal."""
