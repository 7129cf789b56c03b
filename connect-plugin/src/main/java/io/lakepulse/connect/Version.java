package io.lakepulse.connect;

final class Version {
  static final String VERSION = "0.1.0";

  private Version() {}
}
