-- surge.sql: surge multipliers per (cell, product) from location.update and trip.requested,
-- as an Arroyo SQL pipeline. The curve, clamp and rounding are the native surge-pricer's
-- (UDF surge_multiplier = surgeflow_domain::surge::SurgeCurve); cells are the routers'
-- (UDF geohash_cell = surgeflow_domain::geo::Cell). See pipelines/README.md for what differs
-- from the native operators (no halo smoothing, no damping or hysteresis, ...).
--
-- Parameters (edit in place; the defaults are topology.yaml's):
--   cell precision 6; demand window 5 min hopping every 30 s; curve '1:1,2:1.5,4:2.5',
--   cap 3.0, step 0.1; Kafka on 127.0.0.1:9092, schema registry on 127.0.0.1:8081.

-- Driver pings (schemas/location_update.avsc), Avro in the Confluent wire format.
CREATE TABLE location_update (
    driver_id TEXT NOT NULL,
    lat DOUBLE NOT NULL,
    lon DOUBLE NOT NULL,
    accuracy_m DOUBLE,
    speed_mps DOUBLE,
    heading_deg DOUBLE,
    status TEXT NOT NULL,
    product TEXT NOT NULL,
    event_time TIMESTAMP NOT NULL
) WITH (
    connector = 'kafka',
    type = 'source',
    bootstrap_servers = '127.0.0.1:9092',
    topic = 'location.update',
    format = 'avro',
    'avro.confluent_schema_registry' = 'true',
    'schema_registry.endpoint' = 'http://127.0.0.1:8081',
    'source.offset' = 'latest',
    'source.read_mode' = 'read_committed',
    event_time_field = 'event_time'
);

-- Trip requests (schemas/trip_requested.avsc).
CREATE TABLE trip_requested (
    trip_id TEXT NOT NULL,
    rider_id TEXT NOT NULL,
    product TEXT NOT NULL,
    pickup_lat DOUBLE NOT NULL,
    pickup_lon DOUBLE NOT NULL,
    dropoff_lat DOUBLE,
    dropoff_lon DOUBLE,
    event_time TIMESTAMP NOT NULL
) WITH (
    connector = 'kafka',
    type = 'source',
    bootstrap_servers = '127.0.0.1:9092',
    topic = 'trip.requested',
    format = 'avro',
    'avro.confluent_schema_registry' = 'true',
    'schema_registry.endpoint' = 'http://127.0.0.1:8081',
    'source.offset' = 'latest',
    'source.read_mode' = 'read_committed',
    event_time_field = 'event_time'
);

-- The output: not surge.multiplier, whose Avro schema has an enum `product`, a `stale`
-- flag and a `<cell>:<product>` key that Arroyo's generated schema does not reproduce.
CREATE TABLE surge_multiplier_arroyo (
    cell TEXT NOT NULL,
    product TEXT NOT NULL,
    multiplier DOUBLE,
    supply BIGINT NOT NULL,
    demand BIGINT NOT NULL,
    window_start TIMESTAMP NOT NULL,
    window_end TIMESTAMP NOT NULL
) WITH (
    connector = 'kafka',
    type = 'sink',
    bootstrap_servers = '127.0.0.1:9092',
    topic = 'surge.multiplier.arroyo',
    format = 'avro',
    'avro.confluent_schema_registry' = 'true',
    'schema_registry.endpoint' = 'http://127.0.0.1:8081',
    'sink.commit_mode' = 'exactly_once'
);

-- Each driver's latest ping in the window: where it is and what it does.
CREATE VIEW latest_ping AS
SELECT
    hop(INTERVAL '30' SECOND, INTERVAL '5' MINUTE) AS win,
    driver_id,
    product,
    last_value(geohash_cell(lat, lon, 6) ORDER BY event_time) AS cell,
    last_value(status ORDER BY event_time) AS status
FROM location_update
GROUP BY win, driver_id, product;

-- Supply: drivers whose latest ping in the window is AVAILABLE, per cell.
CREATE VIEW supply AS
SELECT win, cell, product, count(*) AS supply
FROM latest_ping
WHERE status = 'AVAILABLE'
GROUP BY win, cell, product;

-- Demand: requests per pickup cell in the same hopping window.
CREATE VIEW demand AS
SELECT
    hop(INTERVAL '30' SECOND, INTERVAL '5' MINUTE) AS win,
    geohash_cell(pickup_lat, pickup_lon, 6) AS cell,
    product,
    count(*) AS demand
FROM trip_requested
GROUP BY win, cell, product;

-- Ratio demand / max(supply, 1), as the engine computes it, then the shared curve.
INSERT INTO surge_multiplier_arroyo
SELECT
    d.cell,
    d.product,
    surge_multiplier(
        CAST(d.demand AS DOUBLE)
            / CAST(CASE WHEN coalesce(s.supply, 0) < 1 THEN 1 ELSE s.supply END AS DOUBLE),
        '1:1,2:1.5,4:2.5',
        3.0,
        0.1
    ) AS multiplier,
    coalesce(s.supply, 0) AS supply,
    d.demand,
    d.win.start AS window_start,
    d.win.end AS window_end
FROM demand AS d
LEFT JOIN supply AS s
    ON d.win = s.win AND d.cell = s.cell AND d.product = s.product;
