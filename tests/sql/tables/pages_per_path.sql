-- Group keys that are expressions: hits per path (by the SELECT name GROUP BY uses) and
-- per failed or not, in sliding windows.
SELECT regexp_extract(request, '^GET (/[^ ]*)', 1) AS path, status >= 400 AS failed,
       window.start AS event_start, window.end AS event_end, count(*) AS hits,
       sum(bytes) AS bytes
FROM clickstream WATERMARK timestamp DELAY OF INTERVAL 60 SECONDS
GROUP BY window(timestamp, '60 seconds', '20 seconds'), path, status >= 400
