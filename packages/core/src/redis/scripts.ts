// Lua scripts of the Redis store. Each touches only keys of one `{id}` hash tag, so it runs on Cluster too.
// One file because the scripts share Lua fragments (the change trail, the record version, the clock) spliced into several of them.

/**
 * Adds a change entry to a key's change trail: a list of `<id> <json>` entries, oldest first, trimmed to
 * its newest `cap` (O(1) for each entry appended). Security events have a list of their own (see
 * EVENTS_SCRIPT), so they can never push a change out. Ids are the server's time, `<ms>-<seq>` with
 * seq the microseconds within the ms times 1000 (events of one call add 1, 2, ... to theirs). A trail
 * written by an earlier version, one string of lines, becomes a list on first touch. JSON escapes
 * newlines, so a line is an entry.
 */
const TRAIL_FUNCTION = `local function trail(key, entry, cap)
  local t = redis.call('TIME')
  local id = string.format('%d-%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), (tonumber(t[2]) % 1000) * 1000)
  if redis.call('TYPE', key).ok == 'string' then
    local old = redis.call('GET', key)
    redis.call('DEL', key)
    for line in string.gmatch(old, '[^\\n]+') do redis.call('RPUSH', key, line) end
  end
  redis.call('RPUSH', key, id .. ' ' .. entry)
  redis.call('LTRIM', key, -cap, -1)
  return id
end
`;

/**
 * The version of a stored record: records are written with it first, so a pattern reads it without
 * decoding the JSON (which would cost more than a whole charge); anything else is decoded.
 */
const VERSION_FUNCTION = `local function version(json)
  local v = string.match(json, '^{"version":(%d+)[,}]')
  if v then return tonumber(v) end
  local ok, decoded = pcall(cjson.decode, json)
  if ok and type(decoded) == 'table' then return tonumber(decoded['version']) end
  return nil
end
`;

/** The time of a charge in ms: ARGV[1], or the server's clock when it is ''. */
const NOW = `local floor, ceil, tonumber = math.floor, math.ceil, tonumber
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
`;

/**
 * Compare-and-set of a key record, with its audit entry and the invalidation in the same atomic step.
 * KEYS[1] record, KEYS[2] the key's audit trail; ARGV[1] new JSON, ARGV[2] expected version, ARGV[3]
 * channel, ARGV[4] id, ARGV[5] audit entry JSON ('' for none), ARGV[6] the trail's length cap. The
 * entry is written first: if it cannot be, nothing is.
 * Returns {1, entry id or '', 1} written and announced, {1, entry id or '', 0, why} written but not
 * announced (PUBLISH refused), {0} version mismatch, {-1} no record.
 */
export const REPLACE_SCRIPT = `${TRAIL_FUNCTION}${VERSION_FUNCTION}
local current = redis.call('GET', KEYS[1])
if not current then return {-1} end
if version(current) ~= tonumber(ARGV[2]) then return {0} end
local entry = ''
if ARGV[5] ~= '' then entry = trail(KEYS[2], ARGV[5], tonumber(ARGV[6])) end
redis.call('SET', KEYS[1], ARGV[1])
-- pcall: a user without the right to PUBLISH still gets its change, and learns it was not announced.
local published = redis.pcall('PUBLISH', ARGV[3], ARGV[4])
if type(published) == 'table' and published.err then return {1, entry, 0, published.err} end
return {1, entry, 1}
`;

/**
 * Adds security events to a key's own list of them (never its change trail), if the key exists or has a
 * trail (a deleted key keeps its history): a made-up id gets none, or every well-formed made-up key an
 * attacker sends would leave a Redis key behind. Trimmed to the newest `cap`, O(1) per event.
 * KEYS[1] the events list, KEYS[2] record, KEYS[3] change trail; ARGV[1] cap, then each event's JSON.
 * Returns how many were added.
 */
export const EVENTS_SCRIPT = `
if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3]) == 0 then return 0 end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = (tonumber(t[2]) % 1000) * 1000
for i = 2, #ARGV do
  redis.call('RPUSH', KEYS[1], string.format('%d-%d', ms, seq + i - 1) .. ' ' .. ARGV[i])
end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
return #ARGV - 1
`;

/**
 * Appends entries to one of the store's two logs (streams): changes, or security events. Kept apart so
 * that a flood of events never trims a change away; one id sequence over both (each new id above the
 * last of either), so reading them merged keeps the order. Both live in one slot (see RedisStore).
 * KEYS[1] the change log, KEYS[2] the security log; ARGV[1] 1 (changes) or 2 (events), ARGV[2] cap
 * (one entry out for one in), then each entry's JSON. Returns the ids.
 */
export const LOG_SCRIPT = `
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = 0
for i = 1, 2 do
  local last = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', 1)
  if last[1] then
    local lms, lseq = string.match(last[1][1], '^(%d+)-(%d+)$')
    lms, lseq = tonumber(lms), tonumber(lseq)
    if lms > ms then ms, seq = lms, lseq + 1 elseif lms == ms and lseq >= seq then seq = lseq + 1 end
  end
end
local key = KEYS[tonumber(ARGV[1])]
local ids = {}
for i = 3, #ARGV do
  local id = string.format('%d-%d', ms, seq)
  redis.call('XADD', key, 'MAXLEN', ARGV[2], id, 'e', ARGV[i])
  ids[#ids + 1] = id
  seq = seq + 1
end
return ids
`;

/**
 * A new key record and its audit entry, unless the id is taken.
 * KEYS[1] record, KEYS[2] the key's audit trail; ARGV[1] JSON, ARGV[2] audit entry JSON ('' for
 * none), ARGV[3] the trail's length cap.
 * Returns {1, entry id or ''} written, {0} taken.
 */
export const INSERT_SCRIPT = `${TRAIL_FUNCTION}
if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
local entry = ''
if ARGV[2] ~= '' then entry = trail(KEYS[2], ARGV[2], tonumber(ARGV[3])) end
redis.call('SET', KEYS[1], ARGV[1])
return {1, entry}
`;

/**
 * Deletes a key record and its credits (kept when the record was rotated: its successors may charge
 * them) if the version is still the expected one, with its audit
 * entry and the invalidation in the same step. The key's audit trail stays: it is the key's history.
 * Rate-limit state expires by itself.
 * KEYS[1] record, KEYS[2] credits, KEYS[3] audit trail; ARGV[1] expected version, ARGV[2] channel,
 * ARGV[3] id, ARGV[4] audit entry JSON ('' for none), ARGV[5] the trail's cap.
 * Returns {1, entry id or '', owner id or '', announced 1 or 0, why} deleted, {0} version mismatch, {-1}
 * no record.
 */
export const REMOVE_SCRIPT = `${TRAIL_FUNCTION}
local current = redis.call('GET', KEYS[1])
if not current then return {-1} end
local ok, decoded = pcall(cjson.decode, current)
if not ok or tonumber(decoded['version']) ~= tonumber(ARGV[1]) then return {0} end
local entry = ''
if ARGV[4] ~= '' then entry = trail(KEYS[3], ARGV[4], tonumber(ARGV[5])) end
-- A superseded key's credit count may be its chain's, still charged by the keys that replaced it.
if type(decoded['rotatedTo']) == 'string' then redis.call('DEL', KEYS[1]) else redis.call('DEL', KEYS[1], KEYS[2]) end
local owner = ''
if type(decoded['ownerId']) == 'string' then owner = decoded['ownerId'] end
local published = redis.pcall('PUBLISH', ARGV[2], ARGV[3])
if type(published) == 'table' and published.err then return {1, entry, owner, 0, published.err} end
return {1, entry, owner, 1}
`;

/**
 * The charges of one or more requests of one subject, made at the same instant, one after the other
 * in the order given: each all or nothing (when one of its limits or the credits refuse, nothing of it
 * is charged), exactly as `evaluate()` in limits.ts would answer them one by one (the conformance
 * suite holds the two to the same answers). Requests that arrive together for one key (a busy key
 * under many connections) so share one call: one round trip for all of them, and the state is read
 * and written once.
 * KEYS: with a key version, [record, credits (only with a credit policy), bucket...]; without,
 * [bucket...].
 * ARGV[1] now in ms ('' = the server's clock), ARGV[2] key version ('' = not a key), ARGV[3] number
 * of limits n, ARGV[4] the key's credit policy as the caller's copy of the record of that version
 * holds it ('remaining:setAt:generation[:amount:interval]', '' for none), then limit and window (ms)
 * of each limit, then the number of requests m, then for each request its credit cost and the cost
 * of each limit. Only the version is read of the record (`version()`), never the rest of its JSON
 * (decoding it would cost more than all the rest).
 * The credits' KEYS[2] is the count of the key or of its rotation chain (the policy's `account`); one
 * set by a newer generation than the policy's answers {'CHANGED'} as well.
 * Returns {'CHANGED'} (the version differs or is missing, or the credits are of a newer generation) or, for each request in turn, outcome,
 * credits left (-1 none), retry ms (-1 never; 0 admitted), then remaining and reset (ms) of each limit.
 */
export const CONSUME_SCRIPT = `${VERSION_FUNCTION}${NOW}local n = tonumber(ARGV[3])
local first = 0
local policy = nil
if ARGV[2] ~= '' then
  first = 1
  -- A missing record is a change too: the caller reads it and sorts it out.
  local record = redis.call('GET', KEYS[1])
  if not record or version(record) ~= tonumber(ARGV[2]) then return {'CHANGED'} end
  if ARGV[4] ~= '' then
    first = 2
    local r, t, g, amount, interval = string.match(ARGV[4], '^(%d+):(%d+):(%d+):?(%d*):?(%d*)$')
    policy = {remaining = tonumber(r), setAt = tonumber(t), generation = tonumber(g)}
    if amount ~= '' then policy.amount, policy.interval = tonumber(amount), tonumber(interval) end
  end
end
-- Each limit's debt now (in 1/limit ms), decayed since it was stored.
local lim, win, debt = {}, {}, {}
for i = 1, n do
  local limit, window = tonumber(ARGV[3 + i * 2]), tonumber(ARGV[4 + i * 2])
  local d = 0
  local stored = redis.call('GET', KEYS[first + i])
  if stored then
    local at, owed = string.match(stored, '^(%d+):(%d+)$')
    local elapsed = now - tonumber(at)
    owed = tonumber(owed)
    if elapsed <= 0 then d = owed elseif elapsed < window then d = owed - elapsed * limit if d < 0 then d = 0 end end
  end
  lim[i], win[i], debt[i] = limit, window, d
end
-- The live credits, refilled.
local left, refilled, gen = -1, 0, 0
if policy then
  gen = policy.generation
  left, refilled = policy.remaining, policy.setAt
  local st = redis.call('HMGET', KEYS[2], 'r', 't', 'g')
  -- Set by a newer policy (a rotation chain's newest key): this copy of the record is behind, never charged.
  if st[3] and tonumber(st[3]) > gen then return {'CHANGED'} end
  if st[3] and tonumber(st[3]) == gen then left, refilled = tonumber(st[1]), tonumber(st[2]) end
  if policy.interval and now - refilled >= policy.interval then
    local periods = floor((now - refilled) / policy.interval)
    if left < policy.amount then left = policy.amount end
    refilled = refilled + periods * policy.interval
  end
end
local out = {}
local at = 5 + n * 2
local m = tonumber(ARGV[at])
local charged = false
local credited = false
for j = 1, m do
  local spend = tonumber(ARGV[at + 1])
  local outcome, retry = 'OK', 0
  local impossible = false
  local after = {}
  for i = 1, n do
    local cost = tonumber(ARGV[at + 1 + i])
    local capacity = win[i] * lim[i]
    local total = debt[i] + cost * win[i]
    after[i] = total
    if cost > lim[i] then
      outcome, impossible = 'RATE_LIMITED', true
    elseif total > capacity then
      outcome = 'RATE_LIMITED'
      local r = ceil((total - capacity) / lim[i])
      if r > retry then retry = r end
    end
  end
  if impossible then retry = -1 end
  -- Credits refuse first: waiting out a rate limit does not bring them back.
  if policy and spend > 0 and left < spend then
    outcome, retry = 'USAGE_EXCEEDED', -1
    if policy.interval then retry = refilled + policy.interval - now end
  end
  if outcome == 'OK' then
    for i = 1, n do debt[i] = after[i] end
    if policy then left = left - spend credited = true end
    charged = true
  end
  out[#out + 1] = outcome
  out[#out + 1] = left
  out[#out + 1] = retry
  for i = 1, n do
    out[#out + 1] = floor((win[i] * lim[i] - debt[i]) / win[i])
    out[#out + 1] = ceil(debt[i] / lim[i])
  end
  at = at + 1 + n
end
if charged then
  for i = 1, n do
    local d = debt[i]
    -- Integers below 1e14 print exactly as they are; larger ones need the slower exact format.
    local state
    if d < 1e14 then state = now .. ':' .. d else state = string.format('%.0f:%.0f', now, d) end
    local ttl = ceil(d / lim[i])
    if ttl < 1 then ttl = 1 end
    redis.call('SET', KEYS[first + i], state, 'PX', ttl)
  end
end
if credited then
  -- Numbers given to redis.call are written exactly (17 digits).
  redis.call('HSET', KEYS[2], 'r', left, 't', refilled, 'g', gen)
end
return out
`;

/**
 * Gives back a charge that CONSUME_SCRIPT admitted, because a later guard refused the request: each
 * limit's debt, decayed to now, less the charge's (exactly what it would be had the charge never been
 * made, as LocalBuckets.refund computes it), and the credits' cost while their generation is the one
 * charged. KEYS: [credits (only with a credit policy), bucket...]. ARGV[1] now ('' = the server's
 * clock), ARGV[2] number of limits n, ARGV[3] the credit policy as for CONSUME_SCRIPT ('' for none),
 * then limit and window of each limit, then the credit cost, then the cost of each limit.
 */
export const REFUND_SCRIPT = `${NOW}local n = tonumber(ARGV[2])
local first = 0
if ARGV[3] ~= '' then first = 1 end
for i = 1, n do
  local limit, window = tonumber(ARGV[2 + i * 2]), tonumber(ARGV[3 + i * 2])
  local cost = tonumber(ARGV[4 + n * 2 + i])
  local key = KEYS[first + i]
  local stored = redis.call('GET', key)
  if stored then
    local at, owed = string.match(stored, '^(%d+):(%d+)$')
    local elapsed = now - tonumber(at)
    local d = tonumber(owed)
    if elapsed >= window then d = 0 elseif elapsed > 0 then d = d - elapsed * limit end
    d = d - cost * window
    if d <= 0 then
      redis.call('DEL', key)
    else
      local state
      if d < 1e14 then state = now .. ':' .. d else state = string.format('%.0f:%.0f', now, d) end
      local ttl = ceil(d / limit)
      if ttl < 1 then ttl = 1 end
      redis.call('SET', key, state, 'PX', ttl)
    end
  end
end
local spend = tonumber(ARGV[4 + n * 2])
if first == 1 and spend > 0 then
  local r, t, g, amount, interval = string.match(ARGV[3], '^(%d+):(%d+):(%d+):?(%d*):?(%d*)$')
  local st = redis.call('HMGET', KEYS[1], 'r', 't', 'g')
  if st[3] and tonumber(st[3]) == tonumber(g) then
    local left, refilled = tonumber(st[1]), tonumber(st[2])
    if interval ~= '' and now - refilled >= tonumber(interval) then
      local periods = floor((now - refilled) / tonumber(interval))
      if left < tonumber(amount) then left = tonumber(amount) end
      refilled = refilled + periods * tonumber(interval)
    end
    redis.call('HSET', KEYS[1], 'r', left + spend, 't', refilled, 'g', tonumber(g))
  end
end
return 1
`;

/**
 * Adds one key's usage counts for one day, at most once per batch: the hash keeps, per writer, the
 * newest batch it applied (`w:<writer>`), and a batch of that writer no newer is skipped (a writer
 * resends a batch whose write timed out, and sends nothing newer until it is settled).
 * KEYS[1] the key's day hash; ARGV[1] writer ('' for none), ARGV[2] batch number, ARGV[3] seconds to
 * keep the hash, then outcome code and count pairs. Returns 1 applied, 0 applied before.
 */
export const USAGE_SCRIPT = `
if ARGV[1] ~= '' then
  local field = 'w:' .. ARGV[1]
  local done = tonumber(redis.call('HGET', KEYS[1], field))
  if done and done >= tonumber(ARGV[2]) then return 0 end
  redis.call('HSET', KEYS[1], field, ARGV[2])
end
for i = 4, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
`;
