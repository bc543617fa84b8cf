"""PostgreSQL on real Docker volumes: init scripts, persistence, golden clones per test."""
