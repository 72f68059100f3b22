-- contains / startswith / endswith compile to lower(column) LIKE pattern. Without statistics on lower(column)
-- the planner guesses a few dozen matches and picks a parallel scan of the whole table and a sort (160 ms at
-- 1M requests) even when a page of matches is a short walk down the created_at index away (12 ms): these let
-- ANALYZE sample the lowered text, so the estimate follows the data (bench/reads.py, EXPLAIN there).
CREATE STATISTICS requests.elevation_requests_device_name_text ON (lower(device_name)) FROM requests.elevation_requests;
CREATE STATISTICS requests.elevation_requests_upn_text ON (lower(requested_by_upn)) FROM requests.elevation_requests;
CREATE STATISTICS requests.elevation_requests_file_name_text ON (lower(file_name)) FROM requests.elevation_requests;
CREATE STATISTICS requests.elevation_requests_publisher_text ON (lower(publisher_name)) FROM requests.elevation_requests;
CREATE STATISTICS requests.elevation_requests_product_text ON (lower(product_name)) FROM requests.elevation_requests;
