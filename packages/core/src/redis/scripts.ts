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
