// Lua scripts of the rate-limit and credit charges. Each touches only keys of one `{subject}` hash tag, so it runs on Cluster too.
import { VERSION_FUNCTION } from './scripts.js';

/**
 * `timeOf(arg)`: the time of a charge in ms, `arg`, or the server's clock when it is '' (read once per
 * call: every charge of one call is made at the same instant).
 */
const CLOCK = `local floor, ceil, tonumber = math.floor, math.ceil, tonumber
local clock
local function timeOf(arg)
  if arg ~= '' then return tonumber(arg) end
  if not clock then
    local t = redis.call('TIME')
    clock = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
  end
  return clock
end
`;

/**
 * The charges of one subject in one call (a group): one or more requests, made at the same instant,
 * one after the other in the order given: each all or nothing (when one of its limits or the credits
 * refuse, nothing of it is charged), exactly as `evaluate()` in limits.ts would answer them one by one
 * (the conformance suite holds the two to the same answers).
 * `charge(a, at, n, record, values, creditsKey, identity, identityCreditsKey)`: the group's arguments follow ARGV[a], the keys of
 * its n limits are KEYS[at + i], and values[at + i] their state as read before any group was charged
 * (`written` holds what an earlier group of the same call wrote since: groups of one subject with
 * other limits may share a bucket); `record` is its key record as read (false: missing; nil: not a
 * key), `creditsKey` the key of its credit count (with a credit policy); `identity` the record of the
 * key's identity as read (false: missing; nil: no identity) and `identityCreditsKey` its credit count.
 * A group's arguments: now in ms ('' = the server's clock), key version ('' = not a key), number of
 * limits n, the key's credit policy as the caller's copy of the record of that version holds it
 * ('remaining:setAt:generation[:amount:interval]', '' for none), the identity's version ('' for none)
 * and credit policy ('' for none), then limit and window (ms) of each limit (the key's, the
 * middleware's and the identity's: an identity's buckets are keys under its own tag), then the
 * number of requests m, then for each request its credit cost and the cost of each
 * limit. Only the version is read of the record (`version()`), never the rest of its JSON (decoding it
 * would cost more than all the rest).
 * The credits' key is the count of the key or of its rotation chain (the policy's `account`); one set
 * by a newer generation than the policy's answers {'CHANGED'} as well.
 * Appends to `out` 'CHANGED' (the version of the key or of its identity differs or its record is
 * missing, or credits are of a newer generation) or, for each request in turn, outcome, the key's
 * credits left (-1 none), the identity's (-1 none), retry ms (-1 never; 0 admitted), then remaining
 * and reset (ms) of each limit. A request is admitted only when every limit and both credit pools
 * hold it, and then charged in all of them: all or nothing, in one script.
 */
const CHARGE_FUNCTION = `local match = string.match
local written, lim, win, debt, after, out = {}, {}, {}, {}, {}, {}
local o, stamped, stamp = 0, nil, nil
-- A credit count as the policy ('remaining:setAt:generation[:amount:interval]') and the live count at
-- key say, refilled to now: {left, refilled, generation, amount, interval}, or nil when the live count
-- was set by a newer policy (the caller's copy is behind: never charged).
local function pool(policy, key, now)
  local r, t, g, every, period = match(policy, '^(%d+):(%d+):(%d+):?(%d*):?(%d*)$')
  local p = {tonumber(r), tonumber(t), tonumber(g), nil, nil}
  if every ~= '' then p[4], p[5] = tonumber(every), tonumber(period) end
  local st = redis.call('HMGET', key, 'r', 't', 'g')
  if st[3] and tonumber(st[3]) > p[3] then return nil end
  if st[3] and tonumber(st[3]) == p[3] then p[1], p[2] = tonumber(st[1]), tonumber(st[2]) end
  if p[5] and now - p[2] >= p[5] then
    local periods = floor((now - p[2]) / p[5])
    if p[1] < p[4] then p[1] = p[4] end
    p[2] = p[2] + periods * p[5]
  end
  return p
end
-- Whether a record as read (false: missing) is of version v (sent as text).
local function current(record, v)
  return record and (match(record, '^{"version":(%d+)[,}]') == v or version(record) == tonumber(v))
end
-- One party to a charge (the key, or its identity) as the caller saw it (version v, credit policy):
-- false when it is not charged as a record or has no credits, its credit pool when it has, nil when
-- its record (a missing record too) or its credits changed since: the caller reads it and sorts it out.
local function party(v, policy, record, creditsKey, now)
  if v == '' then return false end
  if not current(record, v) then return nil end
  if policy == '' then return false end
  return pool(policy, creditsKey, now)
end
local function charge(a, at, n, record, values, creditsKey, identity, identityCreditsKey)
  local now = timeOf(ARGV[a + 1])
  -- The key, then its identity, charged with it: its version checked like the key's, its credits a second pool.
  local kp = party(ARGV[a + 2], ARGV[a + 4], record, creditsKey, now)
  local ip = kp ~= nil and party(ARGV[a + 5], ARGV[a + 6], identity, identityCreditsKey, now)
  if kp == nil or ip == nil then
    o = o + 1
    out[o] = 'CHANGED'
    return
  end
  -- Each limit's debt now (in 1/limit ms), decayed since it was stored.
  for i = 1, n do
    local limit, window = tonumber(ARGV[a + 5 + i * 2]), tonumber(ARGV[a + 6 + i * 2])
    local d = 0
    local stored = written[KEYS[at + i]]
    if stored == nil then stored = values[at + i] end
    if stored then
      local when, owed = match(stored, '^(%d+):(%d+)$')
      local elapsed = now - tonumber(when)
      owed = tonumber(owed)
      if elapsed <= 0 then d = owed elseif elapsed < window then d = owed - elapsed * limit if d < 0 then d = 0 end end
    end
    lim[i], win[i], debt[i] = limit, window, d
  end
  local c = a + 7 + n * 2
  local charged, credited, icredited = false, false, false
  for j = 1, tonumber(ARGV[c]) do
    local spend = tonumber(ARGV[c + 1])
    local outcome, retry = 'OK', 0
    local impossible = false
    for i = 1, n do
      local cost = tonumber(ARGV[c + 1 + i])
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
    -- Credits refuse first: waiting out a rate limit does not bring them back. Both pools must hold the
    -- cost; the retry is when the last of the short ones refills (never, when one of them does not).
    if spend > 0 and ((kp and kp[1] < spend) or (ip and ip[1] < spend)) then
      outcome, retry = 'USAGE_EXCEEDED', 0
      for _, p in ipairs({kp, ip}) do
        if p and p[1] < spend then
          if not p[5] or retry < 0 then retry = -1
          elseif p[2] + p[5] - now > retry then retry = p[2] + p[5] - now end
        end
      end
    end
    if outcome == 'OK' then
      for i = 1, n do debt[i] = after[i] end
      if kp then kp[1], credited = kp[1] - spend, true end
      if ip then ip[1], icredited = ip[1] - spend, true end
      charged = true
    end
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = outcome, kp and kp[1] or -1, ip and ip[1] or -1, retry
    o = o + 4
    for i = 1, n do
      out[o + 1], out[o + 2] = floor((win[i] * lim[i] - debt[i]) / win[i]), ceil(debt[i] / lim[i])
      o = o + 2
    end
    c = c + 1 + n
  end
  if charged then
    for i = 1, n do
      local d = debt[i]
      -- Integers below 1e14 print exactly as they are; larger ones need the slower exact format.
      local state
      if d < 1e14 then
        -- The time's text is the same for every group of the call on the server's clock: made once.
        if stamped ~= now then stamped, stamp = now, now .. ':' end
        state = stamp .. d
      else
        state = string.format('%.0f:%.0f', now, d)
      end
      local ttl = ceil(d / lim[i])
      if ttl < 1 then ttl = 1 end
      local key = KEYS[at + i]
      redis.call('SET', key, state, 'PX', ttl)
      written[key] = state
    end
  end
  -- Numbers given to redis.call are written exactly (17 digits).
  if credited then redis.call('HSET', creditsKey, 'r', kp[1], 't', kp[2], 'g', kp[3]) end
  if icredited then redis.call('HSET', identityCreditsKey, 'r', ip[1], 't', ip[2], 'g', ip[3]) end
end
`;

/**
 * The charges of one or more subjects (groups, see CHARGE_FUNCTION), laid out one after the other:
 * charges that arrive together (within one turn of the event loop) share one call, and so one round
 * trip and one script run, whether they are of one busy key or of many keys. Every record and limit
 * state is read by one MGET before any group is charged; each group is then charged on its own (one
 * group's CHANGED leaves the others charged).
 * KEYS: first what is read, group after group (with a key version its record, with an identity its
 * record, then each limit's bucket), then the credit counts of each group with credit policies (the
 * key's, then the identity's), in the same order. On a single Redis the identity's keys may lie in
 * other slots; on Cluster a key's identity is charged apart (see Charges).
 * ARGV[1] the number of groups G, ARGV[2] the number of keys read R, then each group's arguments.
 * Returns the groups' replies one after the other, in one flat array: each {'CHANGED'} or the answers
 * to its requests (which never begin with 'CHANGED').
 */
export const CONSUME_SCRIPT = `${VERSION_FUNCTION}${CLOCK}${CHARGE_FUNCTION}local reads = tonumber(ARGV[2])
local values = {}
if reads > 0 then values = redis.call('MGET', unpack(KEYS, 1, reads)) end
local a, at, credit = 2, 0, reads
for g = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[a + 3])
  local record, creditsKey, identity, identityCreditsKey = nil, nil, nil, nil
  if ARGV[a + 2] ~= '' then
    at = at + 1
    record = values[at]
    if ARGV[a + 4] ~= '' then
      credit = credit + 1
      creditsKey = KEYS[credit]
    end
  end
  if ARGV[a + 5] ~= '' then
    at = at + 1
    identity = values[at]
    if ARGV[a + 6] ~= '' then
      credit = credit + 1
      identityCreditsKey = KEYS[credit]
    end
  end
  charge(a, at, n, record, values, creditsKey, identity, identityCreditsKey)
  at = at + n
  a = a + 7 + n * 2 + tonumber(ARGV[a + 7 + n * 2]) * (1 + n)
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
export const REFUND_SCRIPT = `${CLOCK}local now, n = timeOf(ARGV[1]), tonumber(ARGV[2])
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
