-- Users seen more than once from the same ip and city in a minute.
SELECT username, ip, city, window.start AS event_start, window.end AS event_end,
       count(*) AS count
FROM user_clickstream WATERMARK timestamp DELAY OF INTERVAL 60 SECONDS
GROUP BY window(timestamp, '60 seconds'), username, ip, city
HAVING count > 1
