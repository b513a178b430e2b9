--! include key_digest
-- In a run's Redis, for a fork: RESTORE each key (KEYS) from ARGV's (ttl, payload) pairs,
-- replacing any key of that name, then the fast digest of the keys as they landed (as
-- fast_digest.lua: hex digests concatenated, count, size, keys with a TTL), computed
-- from the server's own DUMP of each. ARGV[1] is the prefix to strip from the names.
local strip = ARGV[1]
for i, key in ipairs(KEYS) do
  call('RESTORE', key, ARGV[2 * i], ARGV[2 * i + 1], 'REPLACE')
end
local hexes, count, size, ttls = {}, 0, 0, 0
for _, key in ipairs(KEYS) do
  local h, n, pttl = digest(key, sub(key, #strip + 1))
  if h then
    hexes[#hexes + 1] = h
    count, size = count + 1, size + n
    if pttl > 0 then ttls = ttls + 1 end
  end
end
return {table.concat(hexes), count, size, ttls}
