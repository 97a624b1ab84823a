-- Every version of every playbook definition; runs pin the version they start with.
CREATE TABLE playbooks.playbook_versions (
    name        text NOT NULL,
    version     integer NOT NULL CHECK (version >= 1),
    title       text NOT NULL,
    definition  text NOT NULL,
    format      smallint NOT NULL,
    step_count  integer NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);
