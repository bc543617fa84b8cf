-- Keep the data directory small, so that a clone of it is quick to copy: delete old WAL
-- segments instead of keeping them for reuse (at most 2 MB of them with the 1 MiB
-- segments that POSTGRES_INITDB_ARGS=--wal-segsize=1 gives). Applies to the temporary
-- server that runs these scripts and, via postgresql.auto.conf, to every later start.
ALTER SYSTEM SET wal_recycle = off;
ALTER SYSTEM SET min_wal_size = '2MB';
SELECT pg_reload_conf();
