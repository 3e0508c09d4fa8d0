-- Generated from the service catalogue by `make gen` (deploy/compose.py): do not edit.
-- One database per service that keeps state; run once, when the volume is empty.
CREATE DATABASE "user" OWNER ordermesh;
CREATE DATABASE "inventory" OWNER ordermesh;
CREATE DATABASE "order" OWNER ordermesh;
CREATE DATABASE "notification" OWNER ordermesh;
CREATE DATABASE "auth" OWNER ordermesh;
