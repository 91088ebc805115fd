// Lua scripts of the Redis store. Each touches only keys of one `{id}` hash tag, so it runs on Cluster too.

/**
 * Compare-and-set of a key record, with the invalidation published in the same atomic step.
 * KEYS[1] record; ARGV[1] new JSON, ARGV[2] expected version, ARGV[3] channel, ARGV[4] id.
 * Returns 1 written, 0 version mismatch, -1 no record.
 */
export const REPLACE_SCRIPT = `
local current = redis.call('GET', KEYS[1])
if not current then return -1 end
local ok, decoded = pcall(cjson.decode, current)
if not ok or tonumber(decoded['version']) ~= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`;

/**
 * One request's charge: the key record's version, its credits and every rate limit, all or nothing.
 * The same evaluation as `evaluate()` in limits.ts, step for step (the conformance suite holds the
 * two to the same answers).
 * KEYS: with a key version, [record, credits, bucket...]; without, [bucket...].
 * ARGV[1] now in ms ('' = the server's clock), ARGV[2] key version ('' = not a key), ARGV[3] credit
 * cost, ARGV[4] number of limits, then limit, window (ms), cost for each limit.
 * Returns {'NOT_FOUND'}, {'CHANGED', record} or {outcome, credits (-1 none), retry ms (-1 never),
 * remaining and reset (ms) of each limit}.
 */
export const CONSUME_SCRIPT = `
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local n = tonumber(ARGV[4])
local first = 0
local policy = nil
if ARGV[2] ~= '' then
  first = 2
  local json = redis.call('GET', KEYS[1])
  if not json then return {'NOT_FOUND'} end
  local ok, record = pcall(cjson.decode, json)
  if not ok then return redis.error_reply('ERR till: corrupt key record') end
  if tonumber(record['version']) ~= tonumber(ARGV[2]) then return {'CHANGED', json} end
  if type(record['credits']) == 'table' then policy = record['credits'] end
end
local writes = {}
local refused = false
local impossible = false
local retry = 0
for i = 1, n do
  local a = 5 + (i - 1) * 3
  local limit, window, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local key = KEYS[first + i]
  local debt = 0
  local stored = redis.call('GET', key)
  if stored then
    local sep = string.find(stored, ':', 1, true)
    local at, d = tonumber(string.sub(stored, 1, sep - 1)), tonumber(string.sub(stored, sep + 1))
    local elapsed = now - at
    if elapsed <= 0 then debt = d elseif elapsed < window then debt = math.max(0, d - elapsed * limit) end
  end
  local capacity = window * limit
  local charged = debt + cost * window
  if cost > limit or charged > capacity then
    refused = true
    if cost > limit then
      impossible = true
    else
      local r = math.ceil((charged - capacity) / limit)
      if r > retry then retry = r end
    end
  end
  writes[i] = {key, string.format('%.0f:%.0f', now, charged), math.max(1, math.ceil(charged / limit)), limit, window, debt, charged}
end
-- Every limit as it stands after this request: charged only if all of them admitted it.
local function report(charged)
  local out = {}
  for i = 1, n do
    local w = writes[i]
    local after = w[6]
    if charged then after = w[7] end
    out[#out + 1] = math.floor((w[5] * w[4] - after) / w[5])
    out[#out + 1] = math.ceil(after / w[4])
  end
  return out
end
local left = -1
local credit = nil
if policy then
  local gen = tonumber(policy['generation'])
  local remaining, refilled = tonumber(policy['remaining']), tonumber(policy['setAt'])
  local st = redis.call('HMGET', KEYS[2], 'r', 't', 'g')
  if st[3] and tonumber(st[3]) == gen then remaining, refilled = tonumber(st[1]), tonumber(st[2]) end
  local refill = policy['refill']
  if type(refill) == 'table' then
    local interval, amount = tonumber(refill['interval']), tonumber(refill['amount'])
    if now - refilled >= interval then
      local periods = math.floor((now - refilled) / interval)
      if remaining < amount then remaining = amount end
      refilled = refilled + periods * interval
    end
  end
  left = remaining
  local spend = tonumber(ARGV[3])
  if spend > 0 and remaining < spend then
    local r = -1
    if type(refill) == 'table' then r = refilled + tonumber(refill['interval']) - now end
    return {'USAGE_EXCEEDED', left, r, unpack(report(false))}
  end
  credit = {remaining - spend, refilled, gen}
end
if refused then
  if impossible then retry = -1 end
  return {'RATE_LIMITED', left, retry, unpack(report(false))}
end
for i = 1, n do redis.call('SET', writes[i][1], writes[i][2], 'PX', writes[i][3]) end
if credit then
  redis.call('HSET', KEYS[2], 'r', string.format('%.0f', credit[1]), 't', string.format('%.0f', credit[2]), 'g', string.format('%.0f', credit[3]))
  left = credit[1]
end
return {'OK', left, 0, unpack(report(true))}
`;
