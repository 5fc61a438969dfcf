-- A small query workload for capturing sqlite3's allocation trace.
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, note TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO orders (customer, amount, note)
  SELECT 'customer-' || (i % 997), (i * 37) % 1000 / 7.0, printf('note %d %s', i, hex(randomblob(i % 40)))
  FROM n;
CREATE INDEX orders_customer ON orders (customer);
SELECT customer, count(*), sum(amount), max(length(note)) FROM orders GROUP BY customer
  ORDER BY sum(amount) DESC LIMIT 20;
SELECT a.customer, b.customer, count(*) FROM orders a JOIN orders b ON a.id = b.id + 1
  WHERE a.amount > b.amount GROUP BY a.customer, b.customer ORDER BY 3 DESC LIMIT 10;
UPDATE orders SET note = upper(note) || ' updated' WHERE id % 3 = 0;
DELETE FROM orders WHERE id % 5 = 0;
SELECT group_concat(note, ',') IS NOT NULL FROM (SELECT note FROM orders ORDER BY note LIMIT 5000);
