-- Sliding windows, a WHERE of every kind, strings in min and max, HAVING on an aggregate
-- that is not selected.
SELECT window.start AS event_start, window.end AS event_end, status,
       min(request) AS first_request, max(request) AS last_request,
       count(DISTINCT userid) AS users, sum(bytes * 2) AS double_bytes,
       avg(CAST(status AS DOUBLE) / 100) AS hundreds
FROM clickstream WATERMARK timestamp DELAY OF INTERVAL 60 SECONDS
WHERE status BETWEEN 200 AND 599 AND request NOT LIKE '%.png%'
  AND (status % 100 = 4 OR userid IN (1, 2, 3, 5, 8) OR bytes IS NULL)
  AND NOT (ip LIKE '1_.%' AND userid > 30)
GROUP BY window(timestamp, '60 seconds', '20 seconds'), status
HAVING count(*) > 2
