-- The switch, in one script inside MULTI/EXEC: it RENAMEs the replaced keys to the kept
-- prefix, then the staged keys to their names (RENAMENX where the plan creates the name),
-- and if production is not as planned (a key to replace has vanished, a key has appeared
-- under a name being created) it renames everything back and says which key. A script
-- runs atomically: no reader sees a state in between, no writer slips in. KEYS: R replaced
-- keys, their R kept names, N staged keys, their N names; ARGV[1] = R. A staged key whose
-- TTL ran out meanwhile is counted.
local pcall, call = redis.pcall, redis.call
local r = tonumber(ARGV[1])
local n = (#KEYS - 2 * r) / 2
local replaced, missing, skipped = {}, 0, {}
-- Undo the first ``staged`` renames of staged keys and the first ``kept`` of replaced ones.
local function undo(staged, kept)
  for i = staged, 1, -1 do
    if not skipped[i] then call('RENAME', KEYS[2 * r + n + i], KEYS[2 * r + i]) end
  end
  for i = kept, 1, -1 do call('RENAME', KEYS[r + i], KEYS[i]) end
end
for i = 1, r do
  local ok = pcall('RENAME', KEYS[i], KEYS[r + i])
  if type(ok) == 'table' and ok.err then
    undo(0, i - 1)
    return {'vanished', KEYS[i]}
  end
  replaced[KEYS[i]] = true
end
for i = 1, n do
  local staged, name = KEYS[2 * r + i], KEYS[2 * r + n + i]
  local ok
  if replaced[name] then
    ok = pcall('RENAME', staged, name)
  else
    ok = pcall('RENAMENX', staged, name)
  end
  if type(ok) == 'table' and ok.err then
    missing = missing + 1
    skipped[i] = true
  elseif ok == 0 then
    undo(i - 1, r)
    return {'appeared', name}
  end
end
return {'ok', missing}
