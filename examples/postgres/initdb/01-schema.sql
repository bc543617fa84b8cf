-- Run by the image's entrypoint on an empty data directory, like the official image does
-- with everything in /docker-entrypoint-initdb.d.
CREATE TABLE customers (
    id      integer PRIMARY KEY,
    name    text NOT NULL,
    country text NOT NULL
);

CREATE TABLE orders (
    id          serial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers (id),
    item        text NOT NULL
);
