-- One database per service (hai_inventory is created by POSTGRES_DB).
CREATE DATABASE hai_scheduling;
CREATE DATABASE hai_alerts;
