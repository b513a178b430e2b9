-- In production: RESTORE each staged key (KEYS) from ARGV's (ttl, payload) pairs.
for i, key in ipairs(KEYS) do
  redis.call('RESTORE', key, ARGV[2 * i - 1], ARGV[2 * i])
end
return #KEYS
