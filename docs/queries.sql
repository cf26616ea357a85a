-- Ten questions analysts ask, answered from kapture-sync's tables and views.
-- The same SQL runs on PostgreSQL and SQLite (tests/test_queries.py runs each on both and checks
-- its answer). Parameters are written :name: :cm_id is the account, :since a day 'YYYY-MM-DD' in
-- the account's zone. In psql, replace them (or \set and :'since'); in SQLite's shell, .param set.
-- Local days (`*_day_local`, `day`) are in the account's zone (KAPTURE_TIMEZONE).

-- name: orders_per_day
-- How many orders were created each day, and for how much?
SELECT day, orders, customers, product_value
FROM orders_daily
WHERE cm_id = :cm_id
ORDER BY day;

-- name: status_changes_since
-- Which orders changed status since a given day (e.g. a week ago), from what to what?
SELECT id, from_status, to_status, changed_at
FROM order_status_changes
WHERE cm_id = :cm_id AND from_status IS NOT NULL AND changed_day_local >= :since
ORDER BY changed_at, id;

-- name: top_customers_by_value
-- Who are the ten customers with the highest order value?
SELECT customer_id, COUNT(*) AS orders, SUM(product_value) AS product_value
FROM orders
WHERE cm_id = :cm_id
GROUP BY customer_id
ORDER BY SUM(product_value) DESC, customer_id
LIMIT 10;

-- name: changed_after_delivery
-- Which orders were changed again after a version showed them delivered (DL)?
SELECT DISTINCT later.id
FROM order_versions delivered
JOIN order_versions later
  ON later.cm_id = delivered.cm_id AND later.id = delivered.id
 AND later.last_modification_time > delivered.last_modification_time
WHERE delivered.cm_id = :cm_id AND delivered.delivery_status = 'DL'
ORDER BY later.id;

-- name: time_to_delivery
-- How long after its creation was each order first seen turning delivered (seconds)?
SELECT id, MIN(order_age_seconds) AS seconds_to_delivery
FROM order_status_changes
WHERE cm_id = :cm_id AND to_status = 'DL' AND from_status IS NOT NULL
GROUP BY id
ORDER BY id;

-- name: current_status_mix
-- How many orders are in each status now, by readable name?
SELECT delivery_status_name, COUNT(*) AS orders
FROM orders_current
WHERE cm_id = :cm_id
GROUP BY delivery_status_name
ORDER BY delivery_status_name;

-- name: cancellations_per_day
-- Of the orders created each day, how many are cancelled now?
SELECT day, SUM(CASE WHEN delivery_status = 'CN' THEN orders ELSE 0 END) AS cancelled, SUM(orders) AS orders
FROM orders_daily_status
WHERE cm_id = :cm_id
GROUP BY day
ORDER BY day;

-- name: most_edited_orders
-- Which orders have the most distinct versions on record?
SELECT id, COUNT(*) AS versions
FROM order_versions
WHERE cm_id = :cm_id
GROUP BY id
HAVING COUNT(*) > 1
ORDER BY versions DESC, id;

-- name: open_orders_per_assignee
-- How many orders still approved or pending (AP, PN) does each assignee hold?
SELECT assigned_to_id, COUNT(*) AS open_orders
FROM orders
WHERE cm_id = :cm_id AND delivery_status IN ('AP', 'PN')
GROUP BY assigned_to_id
ORDER BY open_orders DESC, assigned_to_id;

-- name: how_fresh
-- How fresh is the data: newest change stored, lag, and windows read?
SELECT watermark, lag_seconds, windows_read, windows
FROM sync_freshness
WHERE cm_id = :cm_id;
