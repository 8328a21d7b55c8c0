-- Conditional, string and number functions in WHERE and in aggregate arguments;
-- expressions over aggregates and group columns in SELECT.
SELECT userid, window.start AS event_start, window.end AS event_end,
       sum(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS errors,
       sum(IF(request LIKE '%html%', bytes, 0)) AS html_bytes,
       max(length(lower(request))) AS longest,
       min(substr(request, 5, 6)) AS path_start, max(substr(request, -8)) AS tail,
       max(regexp_extract(request, '^GET (/[^ ]*)', 1)) AS last_path,
       count(nullif(status, 200)) AS not_ok, sum(coalesce(bytes, 0)) AS all_bytes,
       max(concat(ip, '#', userid)) AS last_ip_user,
       sum(abs(userid - 20)) AS spread, sum(floor(bytes / 3)) AS thirds,
       sum(ceil(bytes / 7)) AS sevenths, sum((userid - 20) DIV 3) AS thirds_div,
       max(CASE status WHEN 404 THEN 'missing' WHEN 200 THEN 'ok' END) AS word,
       sum(bytes) / count(*) AS bytes_per_click, userid * 10 + 1 AS userid_code,
       count_if(status >= 400) * 100 / count(*) AS error_pct,
       max(round(bytes / 3, 2)) AS third_max, sum(round(userid * 7, -1)) AS rounded,
       min(round(bytes / 7)) AS seventh_min, max(split_part(ip, '.', 2)) AS second_octet,
       min(split_part(request, ' ', -1)) AS protocol, max(split(ip, '[.]')[3]) AS last_octet,
       min(element_at(split(request, ' '), -2)) AS target,
       percentile_approx(bytes, 0.5) AS bytes_median,
       approx_percentile(bytes, 0.25, 1000) AS bytes_q1,
       percentile_approx(bytes / 2, 0.75) AS half_q3,
       -- ties in the ordering give one value: Spark's pick among ties is its own
       max_by(status, status * 100000 + bytes) AS status_of_biggest,
       min_by(upper(request), lower(request)) AS first_request
FROM clickstream WATERMARK timestamp DELAY OF INTERVAL 60 SECONDS
WHERE upper(trim(request)) RLIKE 'GET' AND startswith(request, 'GET')
GROUP BY window(timestamp, '1 minute'), userid
