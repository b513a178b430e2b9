-- omnilab tracking store, version 6: a promotion that omnilab refused (a staged copy that
-- does not match the run's data, an item production cannot accept) is recorded as
-- refused, not failed: production was never at risk, and the run's data is what to look
-- at, not the promotion machinery.

ALTER TABLE omnilab.promotions DROP CONSTRAINT promotions_status_check;
ALTER TABLE omnilab.promotions ADD CONSTRAINT promotions_status_check
    CHECK (status IN ('running', 'succeeded', 'failed', 'refused', 'rolled_back'));
