-- HTTP errors per status in 60 s windows starting every 20 s, kept when above 5.
SELECT status, window.start AS event_start, window.end AS event_end, count(*) AS errors
FROM clickstream WATERMARK timestamp DELAY OF INTERVAL 60 SECONDS
WHERE status > 400
GROUP BY window(timestamp, '60 seconds', '20 seconds'), status
HAVING errors > 5
