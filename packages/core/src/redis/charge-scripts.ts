// Lua scripts of the rate-limit and credit charges. Each touches only keys of one `{subject}` hash tag, so it runs on Cluster too.
import { VERSION_FUNCTION } from './scripts.js';

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
