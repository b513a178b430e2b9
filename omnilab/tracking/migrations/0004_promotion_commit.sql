-- omnilab tracking store, version 4: the commit point of a promotion.
--
-- A promotion is committed once every item is staged and verified, just before the first
-- switch. One whose process died after that point is finished (rolled forward: every item
-- switched) by the next omnilab process that meets it; before that point it is undone.

ALTER TABLE omnilab.promotions
    ADD COLUMN committed_at timestamptz,
    -- What finishing an interrupted promotion did (or why it could not yet), and who did it.
    ADD COLUMN recovered text;
