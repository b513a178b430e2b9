--! include key_digest
-- The fast digest of a batch of keys: every existing key's digest (hex, concatenated; the
-- caller XORs them), how many exist, their size and how many have a TTL.
local strip, add = ARGV[1], ARGV[2]
local hexes, count, size, ttls = {}, 0, 0, 0
for _, key in ipairs(KEYS) do
  local h, n, pttl = digest(key, add .. sub(key, #strip + 1))
  if h then
    hexes[#hexes + 1] = h
    count, size = count + 1, size + n
    if pttl > 0 then ttls = ttls + 1 end
  end
end
return {table.concat(hexes), count, size, ttls}
