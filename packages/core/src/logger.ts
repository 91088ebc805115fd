// The logger contract: Till never logs a key, a secret or a hash through it.

export interface Logger {
  warn(message: string): void;
  error(message: string): void;
}

export const consoleLogger: Logger = {
  warn: (message) => console.warn(message),
  error: (message) => console.error(message),
};

export const silentLogger: Logger = { warn() {}, error() {} };
