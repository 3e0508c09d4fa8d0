-- Generated from the service catalogue (ordermesh.deploy.databases): do not edit.

-- A server of this system's own: no database of it open to every role (psql -v
-- shared_server=1 leaves a shared server's other databases as they are).
\if :{?shared_server}
\else
SELECT format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', datname)
  FROM pg_database WHERE datallowconn
  AND (has_database_privilege('public', oid, 'CONNECT')
    OR has_database_privilege('public', oid, 'TEMPORARY')) \gexec
\endif

-- user: owned by user_owner; the service runs as user_runtime.
\getenv user_owner POSTGRES_USER_OWNER_PASSWORD
\if :{?user_owner}
\else
DO $$ BEGIN RAISE EXCEPTION 'POSTGRES_USER_OWNER_PASSWORD is not set'; END $$;
\endif
SELECT 'CREATE ROLE user_owner' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'user_owner') \gexec
ALTER ROLE user_owner WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'user_owner';
\getenv user_runtime POSTGRES_USER_RUNTIME_PASSWORD
\if :{?user_runtime}
\else
DO $$ BEGIN RAISE EXCEPTION 'POSTGRES_USER_RUNTIME_PASSWORD is not set'; END $$;
\endif
SELECT 'CREATE ROLE user_runtime' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'user_runtime') \gexec
ALTER ROLE user_runtime WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'user_runtime';
SELECT 'CREATE DATABASE "user" OWNER user_owner' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'user') \gexec
ALTER DATABASE "user" OWNER TO user_owner;
REVOKE ALL ON DATABASE "user" FROM PUBLIC;
GRANT CONNECT ON DATABASE "user" TO user_runtime;
\connect "user"
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO user_runtime;
ALTER DEFAULT PRIVILEGES FOR ROLE user_owner IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO user_runtime;
ALTER DEFAULT PRIVILEGES FOR ROLE user_owner IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO user_runtime;
SELECT format('ALTER TABLE public.%I OWNER TO user_owner', tablename) FROM pg_tables
  WHERE schemaname = 'public' AND tableowner <> 'user_owner' \gexec
SELECT format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.%I TO user_runtime', c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT (
    has_table_privilege('user_runtime', c.oid, 'SELECT')
    AND has_table_privilege('user_runtime', c.oid, 'INSERT')
    AND has_table_privilege('user_runtime', c.oid, 'UPDATE')
    AND has_table_privilege('user_runtime', c.oid, 'DELETE')
  ) \gexec
SELECT format('GRANT USAGE, SELECT ON SEQUENCE public.%I TO user_runtime', c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind = 'S' AND NOT (
    has_sequence_privilege('user_runtime', c.oid, 'USAGE')
    AND has_sequence_privilege('user_runtime', c.oid, 'SELECT')
  ) \gexec
\connect postgres

-- inventory: owned by inventory_owner; the service runs as inventory_runtime.
\getenv inventory_owner POSTGRES_INVENTORY_OWNER_PASSWORD
\if :{?inventory_owner}
\else
DO $$ BEGIN RAISE EXCEPTION 'POSTGRES_INVENTORY_OWNER_PASSWORD is not set'; END $$;
\endif
SELECT 'CREATE ROLE inventory_owner' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'inventory_owner') \gexec
ALTER ROLE inventory_owner WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'inventory_owner';
\getenv inventory_runtime POSTGRES_INVENTORY_RUNTIME_PASSWORD
\if :{?inventory_runtime}
\else
DO $$ BEGIN RAISE EXCEPTION 'POSTGRES_INVENTORY_RUNTIME_PASSWORD is not set'; END $$;
\endif
SELECT 'CREATE ROLE inventory_runtime' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'inventory_runtime') \gexec
ALTER ROLE inventory_runtime WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'inventory_runtime';
SELECT 'CREATE DATABASE "inventory" OWNER inventory_owner' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'inventory') \gexec
ALTER DATABASE "inventory" OWNER TO inventory_owner;
REVOKE ALL ON DATABASE "inventory" FROM PUBLIC;
GRANT CONNECT ON DATABASE "inventory" TO inventory_runtime;
\connect "inventory"
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO inventory_runtime;
ALTER DEFAULT PRIVILEGES FOR ROLE inventory_owner IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO inventory_runtime;
ALTER DEFAULT PRIVILEGES FOR ROLE inventory_owner IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO inventory_runtime;
SELECT format('ALTER TABLE public.%I OWNER TO inventory_owner', tablename) FROM pg_tables
  WHERE schemaname = 'public' AND tableowner <> 'inventory_owner' \gexec
SELECT format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.%I TO inventory_runtime', c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT (
    has_table_privilege('inventory_runtime', c.oid, 'SELECT')
    AND has_table_privilege('inventory_runtime', c.oid, 'INSERT')
    AND has_table_privilege('inventory_runtime', c.oid, 'UPDATE')
    AND has_table_privilege('inventory_runtime', c.oid, 'DELETE')
  ) \gexec
SELECT format('GRANT USAGE, SELECT ON SEQUENCE public.%I TO inventory_runtime', c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind = 'S' AND NOT (
    has_sequence_privilege('inventory_runtime', c.oid, 'USAGE')
    AND has_sequence_privilege('inventory_runtime', c.oid, 'SELECT')
  ) \gexec
\connect postgres

-- order: owned by order_owner; the service runs as order_runtime.
\getenv order_owner POSTGRES_ORDER_OWNER_PASSWORD
\if :{?order_owner}
\else
DO $$ BEGIN RAISE EXCEPTION 'POSTGRES_ORDER_OWNER_PASSWORD is not set'; END $$;
\endif
SELECT 'CREATE ROLE order_owner' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'order_owner') \gexec
ALTER ROLE order_owner WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'order_owner';
\getenv order_runtime POSTGRES_ORDER_RUNTIME_PASSWORD
\if :{?order_runtime}
\else
DO $$ BEGIN RAISE EXCEPTION 'POSTGRES_ORDER_RUNTIME_PASSWORD is not set'; END $$;
\endif
SELECT 'CREATE ROLE order_runtime' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'order_runtime') \gexec
ALTER ROLE order_runtime WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'order_runtime';
SELECT 'CREATE DATABASE "order" OWNER order_owner' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'order') \gexec
ALTER DATABASE "order" OWNER TO order_owner;
REVOKE ALL ON DATABASE "order" FROM PUBLIC;
GRANT CONNECT ON DATABASE "order" TO order_runtime;
\connect "order"
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO order_runtime;
ALTER DEFAULT PRIVILEGES FOR ROLE order_owner IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO order_runtime;
ALTER DEFAULT PRIVILEGES FOR ROLE order_owner IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO order_runtime;
SELECT format('ALTER TABLE public.%I OWNER TO order_owner', tablename) FROM pg_tables
  WHERE schemaname = 'public' AND tableowner <> 'order_owner' \gexec
SELECT format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.%I TO order_runtime', c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT (
    has_table_privilege('order_runtime', c.oid, 'SELECT')
    AND has_table_privilege('order_runtime', c.oid, 'INSERT')
    AND has_table_privilege('order_runtime', c.oid, 'UPDATE')
    AND has_table_privilege('order_runtime', c.oid, 'DELETE')
  ) \gexec
SELECT format('GRANT USAGE, SELECT ON SEQUENCE public.%I TO order_runtime', c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind = 'S' AND NOT (
    has_sequence_privilege('order_runtime', c.oid, 'USAGE')
    AND has_sequence_privilege('order_runtime', c.oid, 'SELECT')
  ) \gexec
\connect postgres

-- notification: owned by notification_owner; the service runs as notification_runtime.
\getenv notification_owner POSTGRES_NOTIFICATION_OWNER_PASSWORD
\if :{?notification_owner}
\else
DO $$ BEGIN RAISE EXCEPTION 'POSTGRES_NOTIFICATION_OWNER_PASSWORD is not set'; END $$;
\endif
SELECT 'CREATE ROLE notification_owner' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'notification_owner') \gexec
ALTER ROLE notification_owner WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'notification_owner';
\getenv notification_runtime POSTGRES_NOTIFICATION_RUNTIME_PASSWORD
\if :{?notification_runtime}
\else
DO $$ BEGIN RAISE EXCEPTION 'POSTGRES_NOTIFICATION_RUNTIME_PASSWORD is not set'; END $$;
\endif
SELECT 'CREATE ROLE notification_runtime' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'notification_runtime') \gexec
ALTER ROLE notification_runtime WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'notification_runtime';
SELECT 'CREATE DATABASE "notification" OWNER notification_owner' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'notification') \gexec
ALTER DATABASE "notification" OWNER TO notification_owner;
REVOKE ALL ON DATABASE "notification" FROM PUBLIC;
GRANT CONNECT ON DATABASE "notification" TO notification_runtime;
\connect "notification"
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO notification_runtime;
ALTER DEFAULT PRIVILEGES FOR ROLE notification_owner IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO notification_runtime;
ALTER DEFAULT PRIVILEGES FOR ROLE notification_owner IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO notification_runtime;
SELECT format('ALTER TABLE public.%I OWNER TO notification_owner', tablename) FROM pg_tables
  WHERE schemaname = 'public' AND tableowner <> 'notification_owner' \gexec
SELECT format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.%I TO notification_runtime', c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT (
    has_table_privilege('notification_runtime', c.oid, 'SELECT')
    AND has_table_privilege('notification_runtime', c.oid, 'INSERT')
    AND has_table_privilege('notification_runtime', c.oid, 'UPDATE')
    AND has_table_privilege('notification_runtime', c.oid, 'DELETE')
  ) \gexec
SELECT format('GRANT USAGE, SELECT ON SEQUENCE public.%I TO notification_runtime', c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind = 'S' AND NOT (
    has_sequence_privilege('notification_runtime', c.oid, 'USAGE')
    AND has_sequence_privilege('notification_runtime', c.oid, 'SELECT')
  ) \gexec
\connect postgres

-- auth: owned by auth_owner; the service runs as auth_runtime.
\getenv auth_owner POSTGRES_AUTH_OWNER_PASSWORD
\if :{?auth_owner}
\else
DO $$ BEGIN RAISE EXCEPTION 'POSTGRES_AUTH_OWNER_PASSWORD is not set'; END $$;
\endif
SELECT 'CREATE ROLE auth_owner' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'auth_owner') \gexec
ALTER ROLE auth_owner WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'auth_owner';
\getenv auth_runtime POSTGRES_AUTH_RUNTIME_PASSWORD
\if :{?auth_runtime}
\else
DO $$ BEGIN RAISE EXCEPTION 'POSTGRES_AUTH_RUNTIME_PASSWORD is not set'; END $$;
\endif
SELECT 'CREATE ROLE auth_runtime' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'auth_runtime') \gexec
ALTER ROLE auth_runtime WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'auth_runtime';
SELECT 'CREATE DATABASE "auth" OWNER auth_owner' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'auth') \gexec
ALTER DATABASE "auth" OWNER TO auth_owner;
REVOKE ALL ON DATABASE "auth" FROM PUBLIC;
GRANT CONNECT ON DATABASE "auth" TO auth_runtime;
\connect "auth"
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO auth_runtime;
ALTER DEFAULT PRIVILEGES FOR ROLE auth_owner IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO auth_runtime;
ALTER DEFAULT PRIVILEGES FOR ROLE auth_owner IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO auth_runtime;
SELECT format('ALTER TABLE public.%I OWNER TO auth_owner', tablename) FROM pg_tables
  WHERE schemaname = 'public' AND tableowner <> 'auth_owner' \gexec
SELECT format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.%I TO auth_runtime', c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT (
    has_table_privilege('auth_runtime', c.oid, 'SELECT')
    AND has_table_privilege('auth_runtime', c.oid, 'INSERT')
    AND has_table_privilege('auth_runtime', c.oid, 'UPDATE')
    AND has_table_privilege('auth_runtime', c.oid, 'DELETE')
  ) \gexec
SELECT format('GRANT USAGE, SELECT ON SEQUENCE public.%I TO auth_runtime', c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind = 'S' AND NOT (
    has_sequence_privilege('auth_runtime', c.oid, 'USAGE')
    AND has_sequence_privilege('auth_runtime', c.oid, 'SELECT')
  ) \gexec
\connect postgres
