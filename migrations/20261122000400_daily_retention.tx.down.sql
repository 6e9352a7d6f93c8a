DROP TABLE retention_runs;
DROP TABLE retention_policies;
DROP TABLE daily_stats;
