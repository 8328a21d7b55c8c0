-- Pages per user per minute: html requests in 60 s windows starting every 5 s.
SELECT userid, window.start AS event_start, window.end AS event_end, count(*) AS pages
FROM clickstream WATERMARK timestamp DELAY OF INTERVAL 60 SECONDS
WHERE request LIKE '%html%'
GROUP BY window(timestamp, '60 seconds', '5 seconds'), userid
