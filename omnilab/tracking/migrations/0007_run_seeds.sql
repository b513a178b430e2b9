-- omnilab tracking store, version 7: where a run's data came from. A run forked from
-- production (`Experiment.seeds`) records, per item, production's counts and checksum at
-- fork time and those of the run's verified copy; NULL for a run with no seeds.

ALTER TABLE omnilab.runs ADD COLUMN seeds jsonb;
