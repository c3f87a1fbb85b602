"""Reports: dependency-free SVG charts and the bench leaderboard pages."""
