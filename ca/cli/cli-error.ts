/** An error the CLI prints as one line (`brevis-ca: message`) before exiting non-zero. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly grpcCode?: number,
  ) {
    super(message);
    this.name = 'CliError';
  }
}
