--! include unordered
-- The digest that ignores the encoding, for a batch of keys: the XOR of each key's digest
-- (of its type, its name relative to the item's prefix, and its value), how many exist,
-- their size and how many have a TTL.
-- Sets and hashes are combined by XOR of each element's SHA-1 (elements are unique), so
-- neither the encoding nor the iteration order, which differ between two servers holding
-- the same data, changes the digest; table.sort is avoided because Lua compares strings
-- with strcoll, which depends on the server's locale. Keys are unique, so XOR is sound.
local strip, add = ARGV[1], ARGV[2]
local call = redis.call
local a1, a2, a3, a4, count, size, ttls = 0, 0, 0, 0, 0, 0, 0
local function ordered(items)
  local n = 0
  for j = 1, #items do
    n = n + #items[j]
    items[j] = #items[j] .. ':' .. items[j]
  end
  return table.concat(items), n
end
for _, key in ipairs(KEYS) do
  local kind = call('TYPE', key)['ok']
  if kind ~= 'none' then
    local body, n
    if kind == 'string' then
      body = call('GET', key)
      n = #body
    elseif kind == 'list' then
      body, n = ordered(call('LRANGE', key, 0, -1))
    elseif kind == 'zset' then
      body, n = ordered(call('ZRANGE', key, 0, -1, 'WITHSCORES'))
    elseif kind == 'set' then
      body, n = unordered(call('SMEMBERS', key), false)
    elseif kind == 'hash' then
      body, n = unordered(call('HGETALL', key), true)
    elseif kind == 'stream' then
      local parts = {}
      n = 0
      for _, entry in ipairs(call('XRANGE', key, '-', '+')) do
        local fields, m = ordered(entry[2])
        parts[#parts + 1] = entry[1] .. '#' .. fields
        n = n + m
      end
      body = table.concat(parts, '\n')
    else
      body = call('DUMP', key)
      n = #body
    end
    local h = sha1(kind .. '\n' .. add .. sub(key, #strip + 1) .. '\n' .. body)
    a1 = bxor(a1, tonumber(sub(h, 1, 8), 16))
    a2 = bxor(a2, tonumber(sub(h, 9, 16), 16))
    a3 = bxor(a3, tonumber(sub(h, 17, 24), 16))
    a4 = bxor(a4, tonumber(sub(h, 25, 32), 16))
    count = count + 1
    size = size + n
    if call('PTTL', key) > 0 then ttls = ttls + 1 end
  end
end
return {bit.tohex(a1) .. bit.tohex(a2) .. bit.tohex(a3) .. bit.tohex(a4), count, size, ttls}
