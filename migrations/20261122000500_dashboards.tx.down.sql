DROP TABLE rollup_errors_hour;
DROP TABLE rollup_errors_minute;
DROP TABLE rollup_hour;
DROP TABLE rollup_minute_proj;
