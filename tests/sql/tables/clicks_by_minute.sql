-- Date and time functions of the window's bounds and of the event time (UTC).
SELECT userid, window.start AS event_start,
       date_format(window.start, 'yyyy-MM-dd HH:mm') AS label,
       hour(window.start) AS h, minute(window.end) AS m,
       date_trunc('HOUR', window.start) AS hour_start,
       count(*) AS clicks,
       date_format(max(timestamp), 'HH:mm:ss.SSS') AS last_click,
       min(timestamp) AS first_click, to_date(window.start) AS day
FROM clickstream WATERMARK timestamp DELAY OF INTERVAL 60 SECONDS
WHERE second(timestamp) < 50 AND timestamp >= '2020-01-01 00:00:00'
      AND to_date(timestamp) >= '2020-01-01'
GROUP BY window(timestamp, '1 minute'), userid
