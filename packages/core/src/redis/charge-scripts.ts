// Lua scripts of the rate-limit and credit charges. On Cluster each touches only keys of one `{subject}` hash tag.
// One file because the charge and its refund read and write limit states (STATES) and credit counts the same way.
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
 * Where limit states live: fields of hashes, one per epoch of an epoch length L (a power of two of ms
 * at least the limit's window), so that one `HSET` per call writes every state charged, instead of a
 * `SET ... PX` per bucket. A state written at `now` lies in epoch e = floor(now / L) and drains by
 * now + window <= (e + 2) * L, when its hash expires: only epochs e - 1 and e can hold a live state at
 * `now` (e + 1 too when time went back). The state of a bucket is the one of these that owes the
 * most: every charge writes at least what the state it read owes (debts decay at one rate, so that
 * order holds ever after), and a refund, which owes less, deletes the bucket's other fields.
 * `epochs(prefix, window, now)`: the names of the hashes of epochs e - 1, e, e + 1 and e's expiry
 * time (ms from now). `owed(stored, now, limit, window)`: a state's debt at now (in 1/limit ms).
 */
const STATES = `local match = string.match
local lengths = {}
local function epochs(prefix, window, now)
  local L = lengths[window]
  if not L then
    L = 1024
    while L < window do L = L * 2 end
    lengths[window] = L
  end
  local e = floor(now / L)
  local base = prefix .. L .. ':'
  return base .. (e - 1), base .. e, base .. (e + 1), (e + 2) * L - now
end
local function owed(stored, now, limit, window)
  if not stored then return 0 end
  local when, d = match(stored, '^(%d+):(%d+)$')
  local elapsed = now - tonumber(when)
  d = tonumber(d)
  if elapsed <= 0 then return d end
  if elapsed >= window then return 0 end
  d = d - elapsed * limit
  if d < 0 then return 0 end
  return d
end
-- A debt written at now as a state: integers below 1e14 print exactly as they are; larger ones need the slower exact format.
local function state(now, d)
  if d < 1e14 then return now .. ':' .. d end
  return string.format('%.0f:%.0f', now, d)
end
`;

/**
 * The charges of one subject in one call (a group): one or more requests, made at the same instant,
 * one after the other in the order given: each all or nothing (when one of its limits or the credits
 * refuse, nothing of it is charged), exactly as `evaluate()` in limits.ts would answer them one by one
 * (the conformance suite holds the two to the same answers).
 * `charge(a, k, record, creditsKey, identity, identityCreditsKey)`: the group's arguments follow ARGV[a]; its
 * n limits are the call's k + 1 to k + n, whose states (see STATES) were read before any group was
 * charged (`written` holds what an earlier group of the same call wrote since: groups of one subject
 * with other limits may share a bucket); `record` is its key record as read (false: missing; nil: not a
 * key), `creditsKey` the key of its credit count (with a credit policy); `identity` the record of the
 * key's identity as read (false: missing; nil: no identity) and `identityCreditsKey` its credit count.
 * A group's arguments: now in ms ('' = the server's clock), key version ('' = not a key), number of
 * limits n, the key's credit policy as the caller's copy of the record of that version holds it
 * ('remaining:setAt:generation[:amount:interval]', '' for none), the identity's version ('' for none)
 * and credit policy ('' for none), then the field, limit and window (ms) of each limit (the key's, the
 * middleware's and the identity's; the field names the subject and the bucket), then the
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
const CHARGE_FUNCTION = `local written, lim, win, debt, after, out = {}, {}, {}, {}, {}, {}
local o = 0
-- What each limit of the call read (see the script): its run of hashes (t) and its place in their replies (at),
-- each run's three replies, and the states each run writes, with its epoch's hash and expiry.
local runOf, placeOf, replies, writes, hashOf, ttlOf = {}, {}, {}, {}, {}, {}
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
local function charge(a, k, record, creditsKey, identity, identityCreditsKey)
  local now, n = timeOf(ARGV[a + 1]), tonumber(ARGV[a + 3])
  -- The key, then its identity, charged with it: its version checked like the key's, its credits a second pool.
  local kp = party(ARGV[a + 2], ARGV[a + 4], record, creditsKey, now)
  local ip = kp ~= nil and party(ARGV[a + 5], ARGV[a + 6], identity, identityCreditsKey, now)
  if kp == nil or ip == nil then
    o = o + 1
    out[o] = 'CHANGED'
    return
  end
  -- Each limit's debt now (in 1/limit ms), decayed since it was stored: the most any of its epochs owes.
  for i = 1, n do
    local limit, window = tonumber(ARGV[a + 5 + i * 3]), tonumber(ARGV[a + 6 + i * 3])
    local d
    local stored = written[ARGV[a + 4 + i * 3]]
    if stored then
      d = owed(stored, now, limit, window)
    else
      local r, at = replies[runOf[k + i]], placeOf[k + i]
      d = owed(r[1][at], now, limit, window)
      local e = owed(r[2][at], now, limit, window)
      if e > d then d = e end
      e = owed(r[3][at], now, limit, window)
      if e > d then d = e end
    end
    lim[i], win[i], debt[i] = limit, window, d
  end
  local c = a + 7 + n * 3
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
      local field, st = ARGV[a + 4 + i * 3], state(now, debt[i])
      local w = writes[runOf[k + i]]
      w[#w + 1], w[#w + 2] = field, st
      written[field] = st
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
 * trip and one script run, whether they are of one busy key or of many keys. Every record is read by
 * one `MGET` and every limit state by one `HMGET` of each epoch (see STATES) before any group is
 * charged; each group is then charged on its own (one group's CHANGED leaves the others charged), and
 * the states charged are written by one `HSET` (and `PEXPIRE`) of each epoch's hash.
 * KEYS: KEYS[1] the prefix of the hashes of limit states (on a single Redis one for every subject; on
 * Cluster, where a call is of one subject, in its slot), then the records read, group after group (with
 * a key version its record, with an identity its record), then the credit counts of each group with
 * credit policies (the key's, then the identity's), in the same order. On a single Redis the identity's
 * keys may lie in other slots; on Cluster a key's identity is charged apart (see Charges).
 * ARGV[1] the number of groups G, ARGV[2] the number of records read R, then each group's arguments.
 * Returns the groups' replies one after the other, in one flat array: each {'CHANGED'} or the answers
 * to its requests (which never begin with 'CHANGED').
 */
export const CONSUME_SCRIPT = `${VERSION_FUNCTION}${CLOCK}${STATES}${CHARGE_FUNCTION}local prefix, reads = KEYS[1], tonumber(ARGV[2])
local values = {}
if reads > 0 then values = redis.call('MGET', unpack(KEYS, 2, reads + 1)) end
-- Which states to read: limits whose hashes are the same (one window's epochs at one time: every limit
-- of a call on the server's clock with the same epoch length) form one run, read by one HMGET per epoch.
local runs, fields, a, k = {}, {}, 2, 0
local groups = tonumber(ARGV[1])
for g = 1, groups do
  local now, n = timeOf(ARGV[a + 1]), tonumber(ARGV[a + 3])
  for i = 1, n do
    local window = tonumber(ARGV[a + 6 + i * 3])
    local before, hash, ahead, ttl = epochs(prefix, window, now)
    local t = runs[hash]
    if not t then
      t = #hashOf + 1
      runs[hash], hashOf[t], ttlOf[t], fields[t], writes[t], replies[t] = t, hash, ttl, {}, {}, {before, hash, ahead}
    end
    local f = fields[t]
    f[#f + 1] = ARGV[a + 4 + i * 3]
    runOf[k + i], placeOf[k + i] = t, #f
  end
  k = k + n
  a = a + 7 + n * 3 + tonumber(ARGV[a + 7 + n * 3]) * (1 + n)
end
for t = 1, #hashOf do
  local r = replies[t]
  for e = 1, 3 do r[e] = redis.call('HMGET', r[e], unpack(fields[t])) end
end
local at, credit = 1, reads + 1
a, k = 2, 0
for g = 1, groups do
  local n = tonumber(ARGV[a + 3])
  local record, creditsKey, identity, identityCreditsKey = nil, nil, nil, nil
  if ARGV[a + 2] ~= '' then
    record = values[at]
    at = at + 1
    if ARGV[a + 4] ~= '' then
      credit = credit + 1
      creditsKey = KEYS[credit]
    end
  end
  if ARGV[a + 5] ~= '' then
    identity = values[at]
    at = at + 1
    if ARGV[a + 6] ~= '' then
      credit = credit + 1
      identityCreditsKey = KEYS[credit]
    end
  end
  charge(a, k, record, creditsKey, identity, identityCreditsKey)
  k = k + n
  a = a + 7 + n * 3 + tonumber(ARGV[a + 7 + n * 3]) * (1 + n)
end
for t = 1, #hashOf do
  local w = writes[t]
  if #w > 0 then
    redis.call('HSET', hashOf[t], unpack(w))
    redis.call('PEXPIRE', hashOf[t], ttlOf[t])
  end
end
return out
`;

/**
 * Gives back a charge that CONSUME_SCRIPT admitted, because a later guard refused the request: each
 * limit's debt, decayed to now, less the charge's (exactly what it would be had the charge never been
 * made, as LocalBuckets.refund computes it), and the credits' cost while their generation is the one
 * charged. The state is written in now's epoch and deleted from the others (it owes less than they may:
 * see STATES); a drained one is deleted. KEYS: [the prefix of the hashes of limit states, credits (only
 * with a credit policy)]. ARGV[1] now ('' = the server's clock), ARGV[2] number of limits n, ARGV[3] the
 * credit policy as for CONSUME_SCRIPT ('' for none), then the field, limit and window of each limit,
 * then the credit cost, then the cost of each limit.
 */
export const REFUND_SCRIPT = `${CLOCK}${STATES}local now, n = timeOf(ARGV[1]), tonumber(ARGV[2])
for i = 1, n do
  local field, limit, window = ARGV[1 + i * 3], tonumber(ARGV[2 + i * 3]), tonumber(ARGV[3 + i * 3])
  local cost = tonumber(ARGV[4 + n * 3 + i])
  local before, hash, ahead, ttl = epochs(KEYS[1], window, now)
  local found, d = false, 0
  for _, h in ipairs({before, hash, ahead}) do
    local stored = redis.call('HGET', h, field)
    if stored then
      found = true
      local e = owed(stored, now, limit, window)
      if e > d then d = e end
    end
  end
  if found then
    d = d - cost * window
    redis.call('HDEL', before, field)
    redis.call('HDEL', ahead, field)
    if d <= 0 then
      redis.call('HDEL', hash, field)
    else
      redis.call('HSET', hash, field, state(now, d))
      redis.call('PEXPIRE', hash, ttl)
    end
  end
end
local spend = tonumber(ARGV[4 + n * 3])
if ARGV[3] ~= '' and spend > 0 then
  local r, t, g, amount, interval = match(ARGV[3], '^(%d+):(%d+):(%d+):?(%d*):?(%d*)$')
  local st = redis.call('HMGET', KEYS[2], 'r', 't', 'g')
  if st[3] and tonumber(st[3]) == tonumber(g) then
    local left, refilled = tonumber(st[1]), tonumber(st[2])
    if interval ~= '' and now - refilled >= tonumber(interval) then
      local periods = floor((now - refilled) / tonumber(interval))
      if left < tonumber(amount) then left = tonumber(amount) end
      refilled = refilled + periods * tonumber(interval)
    end
    redis.call('HSET', KEYS[2], 'r', left + spend, 't', refilled, 'g', tonumber(g))
  end
end
return 1
`;
