-- How sizes spread: count_if, standard deviations and variances (sample and population),
-- per status in sliding windows, so every value is panes merged.
SELECT status, window.start AS event_start, window.end AS event_end,
       count_if(request LIKE '%html%') AS pages, count(bytes) AS sized,
       stddev(bytes) AS bytes_sd, stddev_pop(bytes) AS bytes_sd_pop,
       variance(bytes) AS bytes_var, var_pop(bytes) AS bytes_var_pop
FROM clickstream WATERMARK timestamp DELAY OF INTERVAL 60 SECONDS
GROUP BY window(timestamp, '60 seconds', '20 seconds'), status
