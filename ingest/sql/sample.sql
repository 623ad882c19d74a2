-- Deterministic sample data for `salesdb`: 8 cities in 4 states, 20 salesmen, 200 sales spread
-- over January..June 2026. No random(): every run produces the same rows.
-- Idempotent: each table is filled only while it is empty (the sales only if `sale` is empty).
-- Rows refer to each other by natural keys (city name+state, salesman code), never by
-- hard-coded ids.
\set ON_ERROR_STOP on
SET ROLE tributary;

SELECT NOT EXISTS (SELECT FROM city) AS load_cities \gset
\if :load_cities
INSERT INTO city (name, state) VALUES
    ('São Paulo',      'SP'),
    ('Campinas',       'SP'),
    ('Rio de Janeiro', 'RJ'),
    ('Niterói',        'RJ'),
    ('Belo Horizonte', 'MG'),
    ('Uberlândia',     'MG'),
    ('Curitiba',       'PR'),
    ('Londrina',       'PR');
\endif

SELECT NOT EXISTS (SELECT FROM salesman) AS load_salesmen \gset
\if :load_salesmen
-- salesman n (S001..S020) lives in the ((n-1) % 8 + 1)-th city above.
INSERT INTO salesman (code, name, city_id)
SELECT format('S%s', lpad(s.n::text, 3, '0')),
       s.name,
       c.id
  FROM (VALUES ( 1, 'Ana Souza'),      ( 2, 'Bruno Lima'),      ( 3, 'Carla Dias'),
               ( 4, 'Diego Rocha'),    ( 5, 'Elisa Martins'),   ( 6, 'Fábio Alves'),
               ( 7, 'Gabriela Nunes'), ( 8, 'Heitor Costa'),    ( 9, 'Isabela Ramos'),
               (10, 'João Pereira'),   (11, 'Karina Melo'),     (12, 'Lucas Barros'),
               (13, 'Marina Castro'),  (14, 'Nelson Farias'),   (15, 'Olívia Teixeira'),
               (16, 'Paulo Mendes'),   (17, 'Queila Prado'),    (18, 'Rafael Moura'),
               (19, 'Sofia Cardoso'),  (20, 'Tiago Ribeiro')) AS s (n, name)
  JOIN (SELECT id, row_number() OVER (ORDER BY id) AS k FROM city) AS c
    ON c.k = (s.n - 1) % 8 + 1
 ORDER BY s.n
ON CONFLICT (code) DO NOTHING;
\endif

SELECT NOT EXISTS (SELECT FROM sale) AS load_sales \gset
\if :load_sales
-- Sale g is made by salesman ((g*7) % 20 + 1); one sale in five happens in another city than the
-- salesman's own, so a salesman can rank in several cities. Amounts 50.00..1236.54, dates
-- 2026-01-01..2026-06-29 (the order of g is not the order of sold_at: late events exist).
INSERT INTO sale (salesman_id, city_id, amount, sold_at)
SELECT sm.id,
       CASE WHEN g % 5 = 0
            THEN (SELECT id FROM city ORDER BY id OFFSET ((g / 5) % 8) LIMIT 1)
            ELSE sm.city_id
       END,
       round(50 + ((g * 37) % 97) * 12.25 + (g % 7) * 0.99, 2),
       timestamptz '2026-01-01 09:00:00+00'
         + ((g * 13) % 180) * interval '1 day'
         + ((g * 53) % 600) * interval '1 minute'
  FROM generate_series(1, 200) AS g
  JOIN (SELECT id, city_id, row_number() OVER (ORDER BY code) AS k FROM salesman) AS sm
    ON sm.k = (g * 7) % 20 + 1
 ORDER BY g;
\endif

RESET ROLE;
