-- A window whose length is not a multiple of its slide: 60 s, one every 25 s (an event
-- is in 2 or 3 of them).
SELECT status, window.start AS event_start, window.end AS event_end, count(*) AS n,
       sum(bytes) AS bytes, stddev(bytes) AS spread, count(DISTINCT userid) AS users
FROM clickstream WATERMARK timestamp DELAY OF INTERVAL 60 SECONDS
GROUP BY window(timestamp, '60 seconds', '25 seconds'), status
