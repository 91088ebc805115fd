// Lua scripts of key records, audit entries and usage counts. Each touches only keys of one `{id}` hash tag (or the logs' one slot), so it runs on Cluster too.

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
 * Puts a key into its slot's shard of the expiry index under `score` (its indexed expiry, see
 * store/expiry.ts), or takes it out ('' for none). A changed expiry also forgets the reminder claimed
 * for the old one, so the new one is reminded of in its turn. Both sets share the key's slot.
 */
const EXPIRY_FUNCTION = `local function index_expiry(shard, reminded, id, score)
  local old = redis.call('ZSCORE', shard, id)
  if score == '' then
    if old then redis.call('ZREM', shard, id) end
    redis.call('ZREM', reminded, id)
  elseif not old or tonumber(old) ~= tonumber(score) then
    redis.call('ZADD', shard, score, id)
    redis.call('ZREM', reminded, id)
  end
end
`;

/**
 * The version of a stored record: records are written with it first, so a pattern reads it without
 * decoding the JSON (which would cost more than a whole charge); anything else is decoded.
 */
export const VERSION_FUNCTION = `local function version(json)
  local v = string.match(json, '^{"version":(%d+)[,}]')
  if v then return tonumber(v) end
  local ok, decoded = pcall(cjson.decode, json)
  if ok and type(decoded) == 'table' then return tonumber(decoded['version']) end
  return nil
end
`;

/**
 * Compare-and-set of a key record, with its audit entry and the invalidation in the same atomic step.
 * KEYS[1] record, KEYS[2] the key's audit trail; ARGV[1] new JSON, ARGV[2] expected version, ARGV[3]
 * channel, ARGV[4] id, ARGV[5] audit entry JSON ('' for none), ARGV[6] the trail's length cap. The
 * entry is written first: if it cannot be, nothing is. KEYS[3] and KEYS[4] the expiry index's shard and
 * reminders of the key's slot, ARGV[7] the key's indexed expiry ('' for none).
 * Returns {1, entry id or '', 1} written and announced, {1, entry id or '', 0, why} written but not
 * announced (PUBLISH refused), {0} version mismatch, {-1} no record.
 */
export const REPLACE_SCRIPT = `${TRAIL_FUNCTION}${VERSION_FUNCTION}${EXPIRY_FUNCTION}
local current = redis.call('GET', KEYS[1])
if not current then return {-1} end
if version(current) ~= tonumber(ARGV[2]) then return {0} end
local entry = ''
if ARGV[5] ~= '' then entry = trail(KEYS[2], ARGV[5], tonumber(ARGV[6])) end
redis.call('SET', KEYS[1], ARGV[1])
index_expiry(KEYS[3], KEYS[4], ARGV[4], ARGV[7])
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
 * The next id of the store's two logs (changes and security events, one id sequence over both): above the
 * last id of either, at the server's time when that is later.
 */
const NEXT_LOG_ID_FUNCTION = `local function next_log_id(changes, security)
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local seq = 0
  for _, log in ipairs({changes, security}) do
    local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
    if last[1] then
      local lms, lseq = string.match(last[1][1], '^(%d+)-(%d+)$')
      lms, lseq = tonumber(lms), tonumber(lseq)
      if lms > ms then ms, seq = lms, lseq + 1 elseif lms == ms and lseq >= seq then seq = lseq + 1 end
    end
  end
  return ms, seq
end
`;

/**
 * Appends entries to one of the store's two logs (streams): changes, or security events. Kept apart so
 * that a flood of events never trims a change away; one id sequence over both (each new id above the
 * last of either), so reading them merged keeps the order. Both live in one slot (see layout.ts).
 * KEYS[1] the change log, KEYS[2] the security log; ARGV[1] 1 (changes) or 2 (events), ARGV[2] cap
 * (one entry out for one in), then each entry's JSON. Returns the ids.
 */
export const LOG_SCRIPT = `${NEXT_LOG_ID_FUNCTION}
local ms, seq = next_log_id(KEYS[1], KEYS[2])
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
 * none), ARGV[3] the trail's length cap; KEYS[3] and KEYS[4] the expiry index's shard and reminders of
 * the key's slot, ARGV[4] the key's indexed expiry ('' for none), ARGV[5] the id.
 * Returns {1, entry id or ''} written, {0} taken.
 */
export const INSERT_SCRIPT = `${TRAIL_FUNCTION}${EXPIRY_FUNCTION}
if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
local entry = ''
if ARGV[2] ~= '' then entry = trail(KEYS[2], ARGV[2], tonumber(ARGV[3])) end
redis.call('SET', KEYS[1], ARGV[1])
index_expiry(KEYS[3], KEYS[4], ARGV[5], ARGV[4])
return {1, entry}
`;

/**
 * Deletes a key record and its credits (kept when the record was rotated: its successors may charge
 * them) if the version is still the expected one, with its audit
 * entry and the invalidation in the same step. The key's audit trail stays: it is the key's history.
 * Rate-limit state expires by itself.
 * KEYS[1] record, KEYS[2] credits, KEYS[3] audit trail; ARGV[1] expected version, ARGV[2] channel,
 * ARGV[3] id, ARGV[4] audit entry JSON ('' for none), ARGV[5] the trail's cap; KEYS[4] and KEYS[5] the
 * expiry index's shard and reminders of the key's slot (the key leaves both).
 * Returns {1, entry id or '', owner id or '', announced 1 or 0, why} deleted, {0} version mismatch, {-1}
 * no record.
 */
export const REMOVE_SCRIPT = `${TRAIL_FUNCTION}${EXPIRY_FUNCTION}
local current = redis.call('GET', KEYS[1])
if not current then return {-1} end
local ok, decoded = pcall(cjson.decode, current)
if not ok or tonumber(decoded['version']) ~= tonumber(ARGV[1]) then return {0} end
local entry = ''
if ARGV[4] ~= '' then entry = trail(KEYS[3], ARGV[4], tonumber(ARGV[5])) end
-- A superseded key's credit count may be its chain's, still charged by the keys that replaced it.
if type(decoded['rotatedTo']) == 'string' then redis.call('DEL', KEYS[1]) else redis.call('DEL', KEYS[1], KEYS[2]) end
index_expiry(KEYS[4], KEYS[5], ARGV[3], '')
local owner = ''
if type(decoded['ownerId']) == 'string' then owner = decoded['ownerId'] end
local published = redis.pcall('PUBLISH', ARGV[2], ARGV[3])
if type(published) == 'table' and published.err then return {1, entry, owner, 0, published.err} end
return {1, entry, owner, 1}
`;

/**
 * Adds keys' usage counts for a day each, each key's at most once per batch: a day hash keeps, per writer,
 * the newest batch it applied (`w:<writer>`), and a batch of that writer no newer is skipped for that key
 * (a writer resends a batch whose write timed out, and sends nothing newer until it is settled). One call
 * for many keys (on Cluster, keys of one slot): a flush costs one command, not one per key.
 * KEYS: the keys' day hashes; ARGV[1] writer ('' for none), ARGV[2] batch number, ARGV[3] seconds to keep
 * a hash, then per key in the order of KEYS: its number of outcome codes, then code and count pairs.
 * Returns the number of keys applied (the others were applied before).
 */
export const USAGE_SCRIPT = `
local field = 'w:' .. ARGV[1]
local seq = tonumber(ARGV[2])
local at = 4
local applied = 0
for k = 1, #KEYS do
  local n = tonumber(ARGV[at])
  local from = at + 1
  at = from + 2 * n
  local fresh = true
  if ARGV[1] ~= '' then
    local done = tonumber(redis.call('HGET', KEYS[k], field))
    if done and done >= seq then fresh = false else redis.call('HSET', KEYS[k], field, ARGV[2]) end
  end
  if fresh then
    for i = from, at - 1, 2 do redis.call('HINCRBY', KEYS[k], ARGV[i], ARGV[i + 1]) end
    redis.call('EXPIRE', KEYS[k], ARGV[3])
    applied = applied + 1
  end
end
return applied
`;

/**
 * Sets one key's entry of the expiry index from its record as stored, in one step with reading it: for
 * keys written before the store kept the index. The rule is store/expiry.ts `indexedExpiry`: an expiry,
 * not revoked, not superseded. KEYS[1] record, KEYS[2] and KEYS[3] the expiry index's shard and
 * reminders of the key's slot; ARGV[1] id. Returns 1 indexed, 0 not.
 */
export const REINDEX_EXPIRY_SCRIPT = `${EXPIRY_FUNCTION}
local current = redis.call('GET', KEYS[1])
local score = ''
if current then
  local ok, d = pcall(cjson.decode, current)
  if ok and type(d) == 'table' and type(d['expiresAt']) == 'number' and type(d['revokedAt']) ~= 'number' and type(d['rotatedTo']) ~= 'string' then
    score = string.format('%.0f', d['expiresAt'])
  end
end
index_expiry(KEYS[2], KEYS[3], ARGV[1], score)
if score == '' then return 0 end
return 1
`;

/**
 * Claims the reminder of a key's expiry, once for every process: only while the index holds that very
 * expiry for the key, and not claimed for it before. KEYS[1] and KEYS[2] the expiry index's shard and
 * reminders of the key's slot; ARGV[1] id, ARGV[2] the expiry. Returns 1 claimed, 0 not.
 */
export const CLAIM_REMINDER_SCRIPT = `
local indexed = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not indexed or tonumber(indexed) ~= tonumber(ARGV[2]) then return 0 end
local sent = redis.call('ZSCORE', KEYS[2], ARGV[1])
if sent and tonumber(sent) == tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
`;

/**
 * Compare-and-set of a role in the roles hash, its entry in the change log and the invalidation in one
 * atomic step (the hash and the logs share one slot). KEYS[1] roles hash, KEYS[2] change log, KEYS[3]
 * security log; ARGV[1] name, ARGV[2] role JSON ('' deletes), ARGV[3] expected version ('' for none:
 * only if absent), ARGV[4] channel, ARGV[5] message, ARGV[6] change log cap, ARGV[7] entry JSON ('' for
 * none). Returns {1, 1} done and announced, {1, 0, why} done but not announced, {0} version mismatch.
 */
export const ROLE_SCRIPT = `${NEXT_LOG_ID_FUNCTION}
local current = redis.call('HGET', KEYS[1], ARGV[1])
local version = nil
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' then version = tonumber(decoded['version']) end
end
if ARGV[3] == '' then
  if current then return {0} end
elseif version ~= tonumber(ARGV[3]) then
  return {0}
end
if ARGV[7] ~= '' then
  local ms, seq = next_log_id(KEYS[2], KEYS[3])
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[6], string.format('%d-%d', ms, seq), 'e', ARGV[7])
end
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
local published = redis.pcall('PUBLISH', ARGV[4], ARGV[5])
if type(published) == 'table' and published.err then return {1, 0, published.err} end
return {1, 1}
`;
