-- Every aggregate, per user, in tumbling minutes.
SELECT userid, window.start AS event_start, window.end AS event_end,
       count(*) AS clicks, count(bytes) AS sized, sum(bytes) AS bytes, avg(bytes) AS avg_bytes,
       min(bytes) AS min_bytes, max(bytes) AS max_bytes,
       count(DISTINCT ip) AS ips, approx_count_distinct(ip) AS ips_approx
FROM clickstream WATERMARK timestamp DELAY OF INTERVAL 60 SECONDS
GROUP BY window(timestamp, '1 minute'), userid
