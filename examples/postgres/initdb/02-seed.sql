INSERT INTO customers (id, name, country) VALUES
    (1, 'alice', 'FR'),
    (2, 'bob', 'DE'),
    (3, 'carol', 'FR');

-- Enough rows that a fresh database per test would be noticeably slower than a clone.
INSERT INTO customers (id, name, country)
SELECT g, 'customer-' || g, 'US' FROM generate_series(4, 10000) AS g;

INSERT INTO orders (customer_id, item) VALUES (1, 'book'), (2, 'pen');
