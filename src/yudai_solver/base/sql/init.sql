-- yudai-solver: the whole PostgreSQL schema in one script, for operators who create the database by hand.
--
-- It must produce exactly what the Alembic migrations produce (tests/db/test_schema.py compares the two
-- column for column, index for index, constraint for constraint), and it records the head revision in
-- alembic_version so that `yudai_solver.migrate.upgrade` can take the database further later.
-- Run it once, on an empty database:  psql -v ON_ERROR_STOP=1 -d yudai -f init.sql
-- The job queue's tables belong to the pinned procrastinate package and are not copied here: apply them next with
--   YUDAI_DATABASE_URL=postgresql+psycopg://.../yudai yudai db queue-schema

BEGIN;

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Users and their API tokens (only a hash is stored).
CREATE TABLE users (
    id SERIAL NOT NULL,
    name VARCHAR(255) NOT NULL,
    token_hash VARCHAR(128) NOT NULL,
    is_admin BOOLEAN DEFAULT false NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT uq_users_name UNIQUE (name),
    CONSTRAINT uq_users_token_hash UNIQUE (token_hash)
);

-- Chat sessions: the context a solve is started from.
CREATE TABLE chat_sessions (
    id SERIAL NOT NULL,
    user_id INTEGER NOT NULL,
    title VARCHAR(500),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT chat_sessions_pkey PRIMARY KEY (id),
    CONSTRAINT fk_chat_sessions_user_id FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);

CREATE INDEX ix_chat_sessions_user_id ON chat_sessions (user_id);

-- GitHub (or local) issues, one row per owner, repository and number: no user's text reaches another's solve.
CREATE TABLE issues (
    id SERIAL NOT NULL,
    repo_url VARCHAR(1000) NOT NULL,
    number INTEGER NOT NULL,
    title TEXT NOT NULL,
    body TEXT,
    labels JSONB,
    state VARCHAR(50) DEFAULT 'open' NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE,
    user_id INTEGER,
    CONSTRAINT issues_pkey PRIMARY KEY (id),
    CONSTRAINT uq_issues_user_id_repo_url_number UNIQUE (user_id, repo_url, number),
    CONSTRAINT fk_issues_user_id FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);

-- Repositories (or roots of them) a user may solve; admins may solve all.
CREATE TABLE repo_grants (
    id SERIAL NOT NULL,
    user_id INTEGER NOT NULL,
    repo VARCHAR(1000) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT repo_grants_pkey PRIMARY KEY (id),
    CONSTRAINT uq_repo_grants_user_id_repo UNIQUE (user_id, repo),
    CONSTRAINT fk_repo_grants_user_id FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);

-- Model configurations: a name mapped to provider, model id and settings (never API keys).
CREATE TABLE ai_models (
    id SERIAL NOT NULL,
    name VARCHAR(255) NOT NULL,
    provider VARCHAR(100) NOT NULL,
    model_id VARCHAR(255) NOT NULL,
    config JSONB,
    is_active BOOLEAN DEFAULT true,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT ai_models_pkey PRIMARY KEY (id),
    CONSTRAINT uq_ai_models_name UNIQUE (name)
);

CREATE INDEX idx_ai_models_is_active ON ai_models (is_active);
CREATE INDEX idx_ai_models_provider ON ai_models (provider);

-- A solve: one issue, an experiment matrix, and (at the end) the champion run.
CREATE TABLE solves (
    id VARCHAR(64) NOT NULL,
    user_id INTEGER,
    session_id INTEGER,
    repo_url VARCHAR(1000) NOT NULL,
    issue_number INTEGER NOT NULL,
    base_branch VARCHAR(255) DEFAULT 'main',
    status VARCHAR(50) DEFAULT 'pending',
    matrix JSONB NOT NULL,
    limits JSONB,
    requested_by VARCHAR(255),
    champion_run_id VARCHAR(64),
    max_parallel INTEGER,
    time_budget_s INTEGER,
    error_message TEXT,
    started_at TIMESTAMP WITH TIME ZONE,
    completed_at TIMESTAMP WITH TIME ZONE,
    issue_title TEXT,
    issue_body TEXT,
    setup_command TEXT,
    test_command TEXT,
    create_pr BOOLEAN DEFAULT false NOT NULL,
    baseline JSONB,
    ranking JSONB,
    base_commit VARCHAR(64),
    test_paths JSONB,
    verification JSONB,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT solves_pkey PRIMARY KEY (id),
    CONSTRAINT fk_solves_user_id FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT fk_solves_session_id FOREIGN KEY (session_id) REFERENCES chat_sessions (id)
);

CREATE INDEX idx_solves_user_id ON solves (user_id);
CREATE INDEX idx_solves_session_id ON solves (session_id);
CREATE INDEX idx_solves_status ON solves (status);
CREATE INDEX idx_solves_created_at ON solves (created_at);

-- One experiment of a solve: one agent attempt in one sandbox, and what came out of it.
CREATE TABLE solve_runs (
    id VARCHAR(64) NOT NULL,
    solve_id VARCHAR(64),
    model VARCHAR(255) NOT NULL,
    temperature FLOAT NOT NULL,
    max_edits INTEGER NOT NULL,
    evolution VARCHAR(255) NOT NULL,
    status VARCHAR(50) DEFAULT 'pending',
    sandbox_id VARCHAR(255),
    pr_url VARCHAR(1000),
    tests_passed BOOLEAN,
    loc_changed INTEGER,
    files_changed INTEGER,
    tokens INTEGER,
    latency_ms INTEGER,
    logs_url VARCHAR(1000),
    diagnostics JSONB,
    trajectory_data JSONB,
    error_message TEXT,
    started_at TIMESTAMP WITH TIME ZONE,
    completed_at TIMESTAMP WITH TIME ZONE,
    cost FLOAT,
    steps INTEGER,
    heartbeat_at TIMESTAMP WITH TIME ZONE,
    attempts INTEGER DEFAULT 0 NOT NULL,
    job_id BIGINT,
    agent_exit VARCHAR(50),
    commands INTEGER,
    owner VARCHAR(64),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT solve_runs_pkey PRIMARY KEY (id),
    CONSTRAINT fk_solve_runs_solve_id FOREIGN KEY (solve_id) REFERENCES solves (id) ON DELETE CASCADE
);

CREATE INDEX idx_solve_runs_solve_id ON solve_runs (solve_id);
CREATE INDEX idx_solve_runs_status ON solve_runs (status);
CREATE INDEX idx_solve_runs_created_at ON solve_runs (created_at);

-- solves and solve_runs reference each other, so the champion key comes once both exist.
ALTER TABLE solves
    ADD CONSTRAINT fk_solves_champion_run_id FOREIGN KEY (champion_run_id) REFERENCES solve_runs (id);

-- In-process dispatchers alive now (heartbeat); a run's owner names one, so only a dead one's runs are recovered.
CREATE TABLE dispatchers (
    id VARCHAR(64) NOT NULL,
    host VARCHAR(255) NOT NULL,
    pid INTEGER NOT NULL,
    started_at TIMESTAMP WITH TIME ZONE NOT NULL,
    heartbeat_at TIMESTAMP WITH TIME ZONE NOT NULL,
    CONSTRAINT dispatchers_pkey PRIMARY KEY (id)
);

-- Verified GitHub webhook deliveries; the unique delivery id and event key make a redelivery start nothing twice.
CREATE TABLE webhook_deliveries (
    id SERIAL NOT NULL,
    delivery_id VARCHAR(255) NOT NULL,
    event VARCHAR(100) NOT NULL,
    action VARCHAR(100),
    repo_url VARCHAR(1000),
    issue_number INTEGER,
    sender VARCHAR(255),
    outcome VARCHAR(50) NOT NULL,
    reason TEXT,
    solve_id VARCHAR(64),
    comment_url VARCHAR(1000),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE,
    event_key VARCHAR(255),
    CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (id),
    CONSTRAINT uq_webhook_deliveries_delivery_id UNIQUE (delivery_id),
    CONSTRAINT uq_webhook_deliveries_event_key UNIQUE (event_key),
    CONSTRAINT fk_webhook_deliveries_solve_id FOREIGN KEY (solve_id) REFERENCES solves (id) ON DELETE SET NULL
);

CREATE INDEX ix_webhook_deliveries_solve_id ON webhook_deliveries (solve_id);

INSERT INTO alembic_version (version_num) VALUES ('0008');

COMMIT;
