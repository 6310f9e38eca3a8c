-- One database per service (hai_inventory is created by POSTGRES_DB).
CREATE DATABASE hai_scheduling;
CREATE DATABASE hai_alerts;
CREATE DATABASE hai_hl7_bridge;  -- the HL7 v2 bridge (profile hl7 in docker-compose.yml)
