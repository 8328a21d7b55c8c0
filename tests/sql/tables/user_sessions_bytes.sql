-- Sessions with sums, averages, distinct counts and a deviation (runs merged); upper-case columns as ksqlDB writes them.
SELECT USERNAME, session_window.start AS event_start, session_window.end AS event_end,
       sum(BYTES) AS bytes, avg(BYTES) AS avg_bytes, count(DISTINCT IP) AS ips,
       min(CITY) AS city, count(*) AS clicks,
       stddev(BYTES) AS bytes_sd, count_if(STATUS >= 400) AS errors,
       percentile_approx(BYTES, 0.5) AS bytes_median
FROM user_clickstream WATERMARK timestamp DELAY OF INTERVAL 30 SECONDS
WHERE USERNAME IS NOT NULL
GROUP BY session_window(timestamp, '30 seconds'), USERNAME
HAVING avg(BYTES) > 1000 OR count(*) >= 3
