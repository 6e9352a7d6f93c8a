DROP TABLE rollup_apikey_hour;
DROP TABLE rollup_apikey_minute;
