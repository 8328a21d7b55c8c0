-- Sessions per user: a session closes after 30 s without a click.
SELECT USERNAME AS username, session_window.start AS event_start,
       session_window.end AS event_end, count(*) AS events
FROM user_clickstream WATERMARK timestamp DELAY OF INTERVAL 30 SECONDS
GROUP BY session_window(timestamp, '30 seconds'), USERNAME
